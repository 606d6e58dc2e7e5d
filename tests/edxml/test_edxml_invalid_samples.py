"""Every invalid sample is refused with the right exception, naming the problem, its path and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from edxml_samples import INVALID, line_of
from support.edxml_kinds import message_kind

from gateway.edxml import ValidationIssue, read_document, read_status
from gateway.edxml.validation import explain
from gateway.errors import GatewayError, InvalidEdxml, MalformedEdxml, SchemaInvalid

HEADER = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"

# file, exception, words the message must contain, issue path (None: not a schema issue), line needle
CASES = [
    (
        "bad-date-format.edxml",
        SchemaInvalid,
        "PromulgationDate '2016-04-01' must be written yyyy/MM/dd",
        f"{HEADER}/PromulgationInfo/PromulgationDate",
        "2016-04-01",
    ),
    (
        "impossible-date.edxml",
        SchemaInvalid,
        "PromulgationDate '2015/02/29' is not a real date",
        f"{HEADER}/PromulgationInfo/PromulgationDate",
        "2015/02/29",
    ),
    (
        "bad-organid.edxml",
        SchemaInvalid,
        "OrganId 'H14-CAOBANG' must be written as an agency code",
        f"{HEADER}/To[2]/OrganId",
        "H14-CAOBANG",
    ),
    (
        "unknown-status-code.edxml",
        SchemaInvalid,
        "StatusCode '07' is not one of the allowed codes",
        f"{HEADER}/StatusCode",
        "<edXML:StatusCode>07",
    ),
    (
        "status-bad-timestamp.edxml",
        SchemaInvalid,
        "must be written yyyy/MM/dd HH:mm:ss",
        f"{HEADER}/Timestamp",
        "2016/04/02T09:15",
    ),
    ("missing-subject.edxml", SchemaInvalid, "MessageHeader is missing Subject", HEADER, "<edXML:MessageHeader>"),
    ("missing-to.edxml", SchemaInvalid, "To is missing", f"{HEADER}/DocumentId", "<edXML:DocumentId>"),
    (
        "subject-too-long.edxml",
        SchemaInvalid,
        "Subject is 1439 characters long; at most 1000",
        f"{HEADER}/Subject",
        "<edXML:Subject>",
    ),
    (
        "bad-base64.edxml",
        SchemaInvalid,
        "not base64",
        "/edXML/AttachmentEncoded/Attachment[2]/ContentTransferEncoded",
        "*!",
    ),
    (
        "wrong-root-namespace.edxml",
        SchemaInvalid,
        "must be edXML in namespace http://www.mic.gov.vn/TBT/QCVN_102_2016",
        "/{http://www.e-doc.vn/Schema/}edXML",
        "<edXML xmlns",
    ),
]


@pytest.mark.parametrize(("name", "error", "words", "path", "needle"), CASES, ids=[case[0] for case in CASES])
def test_schema_problem_named_with_path_and_line(
    name: str, error: type[GatewayError], words: str, path: str, needle: str
) -> None:
    sample = INVALID / name
    reader = read_status if "status" in name else read_document
    with pytest.raises(error) as caught:
        reader(sample)
    line = line_of(sample, needle)
    issues: list[ValidationIssue] = caught.value.issues  # type: ignore[attr-defined]
    assert issues[0] == ValidationIssue(line, path, issues[0].message)
    assert words in issues[0].message
    assert words in caught.value.message
    assert f"line {line}, {path}" in caught.value.message


def test_duplicate_recipient_is_inconsistent() -> None:
    sample = INVALID / "duplicate-to.edxml"
    with pytest.raises(InvalidEdxml) as caught:
        read_document(sample)
    second = line_of(sample, "Cao Bằng</edXML:OrganName>") - 1
    assert "000.00.00.H41 twice" in caught.value.message
    assert f"line {second}, {HEADER}/To[2]/OrganId" in caught.value.message


def test_manifest_reference_without_attachment_is_inconsistent() -> None:
    sample = INVALID / "reference-without-attachment.edxml"
    with pytest.raises(InvalidEdxml) as caught:
        read_document(sample)
    line = line_of(sample, "<edXML:ContentId>cid:7816-2")
    assert "ContentId cid:7816-2" in caught.value.message
    assert f"line {line}, /edXML/edXMLEnvelope/edXMLBody/edXMLManifest/Reference[2]/ContentId" in caught.value.message
    assert "no Attachment with that ContentId" in caught.value.message


def test_not_well_formed_reports_line_and_column() -> None:
    sample = INVALID / "not-well-formed.edxml"
    with pytest.raises(MalformedEdxml) as caught:
        read_document(sample)
    line = line_of(sample, "</edXML:Subjet>")
    assert f"line {line}, column" in caught.value.message
    assert "closing tag does not match" in caught.value.message


@pytest.mark.parametrize("name", ["doctype.edxml", "xxe-local-file.edxml", "billion-laughs.edxml"])
def test_doctype_refused(name: str) -> None:
    for reader in (read_document, read_status, message_kind):
        with pytest.raises(MalformedEdxml, match="DOCTYPE"):
            reader(INVALID / name)


def test_every_invalid_sample_is_covered() -> None:
    covered = {case[0] for case in CASES} | {
        "duplicate-to.edxml",
        "reference-without-attachment.edxml",
        "not-well-formed.edxml",
        "doctype.edxml",
        "xxe-local-file.edxml",
        "billion-laughs.edxml",
    }
    assert {path.name for path in Path(INVALID).iterdir()} == covered


def test_bytes_and_path_give_the_same_error() -> None:
    sample = INVALID / "bad-date-format.edxml"
    with pytest.raises(SchemaInvalid) as from_path:
        read_document(sample)
    with pytest.raises(SchemaInvalid) as from_bytes:
        read_document(sample.read_bytes())
    assert from_path.value.message == from_bytes.value.message


def test_many_problems_list_five_and_keep_all() -> None:
    text = (INVALID.parent / "valid" / "full.edxml").read_text(encoding="utf-8")
    for good, bad in [
        ("2016/04/01</edXML:PromulgationDate>", "01/04/2016</edXML:PromulgationDate>"),
        ("2016/06/30", "30/06/2016"),
        ("<edXML:Priority>2<", "<edXML:Priority>9<"),
        ("<edXML:SteeringType>1<", "<edXML:SteeringType>5<"),
        ("<edXML:Type>1<", "<edXML:Type>một<"),
        ("<edXML:Direction>false<", "<edXML:Direction>không<"),
        ("<edXML:Paper>1<", "<edXML:Paper>2<"),
    ]:
        text = text.replace(good, bad, 1)
    with pytest.raises(SchemaInvalid) as caught:
        read_document(text.encode("utf-8"))
    issues: list[ValidationIssue] = caught.value.issues  # type: ignore[attr-defined]
    assert len(issues) == 7
    assert "(7 problems)" in caught.value.message
    assert "and 2 more" in caught.value.message
    assert [issue.line for issue in issues] == sorted(issue.line or 0 for issue in issues)
    assert any("Type 'một' must be a whole number" in issue.message for issue in issues)
    assert any("Direction 'không' must be true or false" in issue.message for issue in issues)


@pytest.mark.parametrize(
    ("good", "bad", "issue"),
    [
        (
            "<edXML:Subject>",
            '<edXML:Subject lang="vi" kind="x">',
            f"{HEADER}/Subject: attribute lang is not allowed on Subject",
        ),
        (
            "</edXML:MessageHeader>",
            "<edXML:Extra>1</edXML:Extra></edXML:MessageHeader>",
            f"{HEADER}/Extra: Extra is not allowed here",
        ),
        (
            "<edXML:Subject>V/v",
            "<edXML:Subject><edXML:b>V/v</edXML:b>",
            f"{HEADER}/Subject: Subject must contain text only, not child elements",
        ),
        (
            "<edXML:From>",
            "<edXML:From>stray",
            f"{HEADER}/From: From contains text where only child elements are allowed",
        ),
    ],
    ids=["attributes", "element-after-the-last", "child-in-text", "text-in-parent"],
)
def test_each_kind_of_problem_is_one_plain_sentence_per_element(good: str, bad: str, issue: str) -> None:
    text = (INVALID.parent / "valid" / "full.edxml").read_text(encoding="utf-8")
    assert good in text
    with pytest.raises(SchemaInvalid) as caught:
        read_document(text.replace(good, bad, 1).encode("utf-8"))
    issues: list[ValidationIssue] = caught.value.issues  # type: ignore[attr-defined]
    assert [str(found).split(", ", 1)[1] for found in issues] == [issue], "two bad attributes are one issue"
    assert "(1 problem)" in caught.value.message


@pytest.mark.parametrize(
    ("message", "sentence"),
    [
        (
            "Element '{http://www.mic.gov.vn/TBT/QCVN_102_2016}Code': [facet 'pattern'] The value 'A-1' is not "
            "accepted by the pattern '[0-9]+'.",
            "Code 'A-1' is not in the expected format",
        ),
        (
            "Element '{http://www.w3.org/2000/09/xmldsig#}SignatureMethod': The attribute 'Algorithm' is required "
            "but missing.",
            "ds:SignatureMethod: The attribute 'Algorithm' is required but missing.",
        ),
    ],
    ids=["pattern-without-a-known-format", "anything-else"],
)
def test_messages_without_a_plainer_wording_keep_their_substance(message: str, sentence: str) -> None:
    assert explain(message) == sentence
