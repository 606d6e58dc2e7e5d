"""Element-name helpers: lxml gives comments and processing instructions a function as tag, not a name."""

from __future__ import annotations

import pytest
from lxml import etree

from gateway.edxml.ns import QCVN, local_name, namespace_of, q


@pytest.mark.parametrize(
    ("tag", "expected"),
    [(q("OrganId"), "OrganId"), ("OrganId", "OrganId"), ("{urn:other}Signature", "Signature")],
)
def test_local_name_of_an_element_drops_the_namespace(tag: str, expected: str) -> None:
    assert local_name(tag) == expected


@pytest.mark.parametrize("node", [etree.Comment("a note"), etree.ProcessingInstruction("pi", "data")])
def test_comments_and_processing_instructions_have_no_local_name(node: etree._Element) -> None:
    assert local_name(node.tag) == ""


def test_namespace_of_a_qualified_and_an_unqualified_name() -> None:
    assert namespace_of(q("From")) == QCVN
    assert namespace_of("From") is None
