"""Validate a normalised edXML tree against the XSDs in ``xsd/`` and explain failures to a clerk.

The schemas are compiled once per process (compiling is far slower than validating). libxml2's
messages name Clark-notation elements and XSD facets; :func:`explain` rewrites them into one plain
sentence per problem ("PromulgationDate '2016-04-01' must be written yyyy/MM/dd") with a readable
path (``/edXML/.../To[2]/OrganId``) and the line in the sender's original file.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import cast

from lxml import etree

from gateway.edxml.normalize import MessageKind
from gateway.edxml.ns import DSIG, PREFIXES, QCVN, local_name, namespace_of
from gateway.errors import SchemaInvalid

XSD_DIR = Path(__file__).resolve().parents[1] / "xsd"
"""Repository ``xsd/`` directory holding the entry schemas."""

ENTRY_SCHEMAS: dict[MessageKind, str] = {"document": "edxml-document.xsd", "status": "edxml-status.xsd"}

MAX_LISTED = 5
"""Problems spelled out in the exception message; all of them are in ``issues``."""

MAX_ISSUES = 50
"""Problems collected at most: a document with thousands of errors is fixed a few dozen at a time, and
locating every one of them cost seconds and hundreds of megabytes (docs/xml-hardening.md)."""

_MAX_ENTRIES = 4 * MAX_ISSUES
"""libxml2 log entries examined at most (several entries may name the same element)."""

FORMATS = {
    "PromulgationDate": "yyyy/MM/dd (for example 2016/04/01)",
    "DueDate": "yyyy/MM/dd (for example 2016/04/01)",
    "Timestamp": "yyyy/MM/dd HH:mm:ss (for example 2016/04/01 08:30:00)",
    "OrganId": "as an agency code such as 000.00.00.G22",
}
"""How to write the pattern-checked fields, keyed by element name."""

_TYPE_WORDS = {
    "unsignedShort": "must be a whole number from 0 to 65535",
    "CountType": "must be a whole number from 0 to 65535",
    "boolean": "must be true or false",
    "base64Binary": "must be base64 text",
}


@dataclass(frozen=True)
class ValidationIssue:
    """One schema problem: line in the sender's file, element path, plain-language message."""

    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line else ""
        return f"{where}{self.path}: {self.message}"


class _Validator:
    """A compiled schema plus a lock: lxml keeps the last error log on the schema object."""

    def __init__(self, path: Path) -> None:
        self._schema = etree.XMLSchema(etree.parse(str(path)))
        self._lock = threading.Lock()

    def errors(self, root: etree._Element, limit: int = _MAX_ENTRIES) -> list[tuple[int | None, str, str]]:
        """The first ``limit`` entries of libxml2's error log."""
        with self._lock:
            if self._schema.validate(root):
                return []
            found: list[tuple[int | None, str, str]] = []
            for entry in self._schema.error_log:
                found.append((entry.line or None, entry.path or "", entry.message))
                if len(found) >= limit:
                    break
            return found


@cache
def _validator(kind: MessageKind) -> _Validator:
    return _Validator(XSD_DIR / ENTRY_SCHEMAS[kind])


def schema_issues(root: etree._Element, kind: MessageKind) -> list[ValidationIssue]:
    """Schema problems of a normalised tree, one per element, in document order, at most :data:`MAX_ISSUES`."""
    issues: list[ValidationIssue] = []
    seen: set[tuple[int | None, str]] = set()
    namespaces: dict[str, str] | None = None
    paths = PathFinder()
    for line, libxml_path, message in _validator(kind).errors(root):
        if namespaces is None:
            namespaces = _namespaces(root)
        element = _locate(root, libxml_path, namespaces)
        path = paths.path(element) if element is not None else libxml_path
        if element is not None and element.sourceline:
            line = element.sourceline
        if (line, path) in seen:
            continue
        seen.add((line, path))
        issues.append(ValidationIssue(line, path, explain(message, root)))
        if len(issues) >= MAX_ISSUES:
            break
    return issues


def schema_invalid(issues: list[ValidationIssue], kind: MessageKind = "document") -> SchemaInvalid:
    """Build the exception: first :data:`MAX_LISTED` problems in the message, all in ``issues``."""
    what = "status message" if kind == "status" else "document"
    count = len(issues)
    listed = "; ".join(str(issue) for issue in issues[:MAX_LISTED])
    more = f"; and {count - MAX_LISTED} more" if count > MAX_LISTED else ""
    noun = "problem" if count == 1 else "problems"
    counted = f"{count} {noun}"
    if count >= MAX_ISSUES:
        counted = f"at least {count} problems; only the first {MAX_ISSUES} are collected"
    error = SchemaInvalid(f"The edXML {what} does not follow QCVN 102:2016 ({counted}): {listed}{more}.")
    error.issues = list(issues)  # type: ignore[attr-defined]
    return error


class PathFinder:
    """Readable element paths for many elements of one tree, each in time proportional to its depth.

    The index of an element among its same-named siblings is found once per parent and name: asking
    each element's siblings anew made locating thousands of errors quadratic.
    """

    def __init__(self) -> None:
        self._indexes: dict[tuple[etree._Element, str], dict[etree._Element, int]] = {}

    def path(self, element: etree._Element) -> str:
        """``/edXML/edXMLEnvelope/.../To[2]/OrganId``: local names, index only among same-named siblings."""
        steps: list[str] = []
        node: etree._Element | None = element
        while node is not None:
            tag = cast(str, node.tag)  # parsed tags are str; types-lxml types any settable tag value
            name = _display_name(tag)
            parent = node.getparent()
            if parent is not None:
                same = self._same_named(parent, tag)
                if len(same) > 1:
                    name = f"{name}[{same[node]}]"
            steps.append(name)
            node = parent
        return "/" + "/".join(reversed(steps))

    def _same_named(self, parent: etree._Element, tag: str) -> dict[etree._Element, int]:
        key = (parent, tag)
        found = self._indexes.get(key)
        if found is None:
            found = {child: index for index, child in enumerate(parent.iterchildren(tag), start=1)}
            self._indexes[key] = found
        return found


def element_path(element: etree._Element) -> str:
    """``/edXML/edXMLEnvelope/.../To[2]/OrganId``: local names, index only among same-named siblings."""
    return PathFinder().path(element)


def _display_name(tag: str) -> str:
    namespace = namespace_of(tag)
    name = local_name(tag)
    if namespace in (QCVN, None):
        return name
    if namespace == DSIG:
        return f"ds:{name}"
    return f"{{{namespace}}}{name}"


def _namespaces(root: etree._Element) -> dict[str, str]:
    """Every prefix declared in the tree, once per validation (not once per error)."""
    namespaces = {prefix: uri for prefix, uri in PREFIXES.items() if prefix}
    for element in root.iter():
        for prefix, uri in element.nsmap.items():
            if prefix and prefix not in namespaces:
                namespaces[prefix] = uri
    return namespaces


def _locate(root: etree._Element, libxml_path: str, namespaces: dict[str, str]) -> etree._Element | None:
    """Find the element libxml2 reported (its paths are ``/*/*[2]`` for default-namespace trees)."""
    if not libxml_path:
        return None
    try:
        found = root.getroottree().xpath(libxml_path, namespaces=namespaces)
    except etree.XPathError:
        return None
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        return found[0]
    return None


_CLARK = re.compile(r"\{([^}]*)\}([\w.-]+)")
_ELEMENT_PREFIX = re.compile(r"^Element '(?P<tag>[^']+)'(?:, attribute '(?P<attr>[^']+)')?: ")
_PATTERN = re.compile(r"\[facet 'pattern'\] The value '(?P<value>.*)' is not accepted by the pattern")
_ENUM = re.compile(r"\[facet 'enumeration'\] The value '(?P<value>.*)' is not an element of the set \{(?P<set>.*)\}")
_MAX_LENGTH = re.compile(r"\[facet 'maxLength'\] The value has a length of '(?P<len>\d+)'; .* length of '(?P<max>\d+)'")
_ATOMIC = re.compile(r"'(?P<value>.*)' is not a valid value of the (?:local )?atomic type '(?P<type>[^']*)'")
_MISSING = re.compile(r"Missing child element\(s\)\. Expected is (?:one of )?\( (?P<names>.*) \)")
_UNEXPECTED = re.compile(r"This element is not expected\.(?: Expected is (?:one of )?\( (?P<names>.*) \))?")


def _short(text: str) -> str:
    """Replace Clark names with local names (``ds:`` for XML-DSig)."""
    return _CLARK.sub(lambda m: _display_name(f"{{{m.group(1)}}}{m.group(2)}"), text)


def _names(text: str) -> str:
    names = [_short(name.strip()) for name in text.split(",")]
    return names[0] if len(names) == 1 else "one of " + ", ".join(names)


def _shorten_value(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."


def explain(message: str, root: etree._Element | None = None) -> str:
    """One libxml2 schema message as a plain sentence naming the element and what is wrong."""
    message = message.strip()
    if "No matching global declaration available for the validation root" in message:
        found = _display_name(cast(str, root.tag)) if root is not None else "the root element"
        return (
            f"the root element is {found}; it must be edXML in namespace {QCVN} "
            "(is this an edXML file of QCVN 102:2016?)"
        )
    head = _ELEMENT_PREFIX.match(message)
    name = _short(head.group("tag")) if head else "element"
    rest = message[head.end() :] if head else message
    if head and head.group("attr"):
        return f"attribute {_short(head.group('attr'))} is not allowed on {name}"
    if match := _PATTERN.search(rest):
        value = match.group("value")
        local = name.rpartition(":")[2]
        if not value.strip():
            return f"{local} must not be empty"
        if local in FORMATS:
            return f"{local} '{_shorten_value(value)}' must be written {FORMATS[local]}"
        return f"{local} '{_shorten_value(value)}' is not in the expected format"
    if match := _ENUM.search(rest):
        allowed = ", ".join(item.strip().strip("'") for item in match.group("set").split(","))
        return f"{name} '{_shorten_value(match.group('value'))}' is not one of the allowed codes {allowed}"
    if match := _MAX_LENGTH.search(rest):
        return f"{name} is {match.group('len')} characters long; at most {match.group('max')} are allowed"
    if match := _ATOMIC.search(rest):
        type_name = match.group("type").rpartition(":")[2].rpartition("}")[2]
        words = _TYPE_WORDS.get(type_name, "has the wrong format")
        return f"{name} '{_shorten_value(match.group('value'))}' {words}"
    if match := _MISSING.search(rest):
        return f"{name} is missing {_names(match.group('names'))}"
    if match := _UNEXPECTED.search(rest):
        if match.group("names"):
            expected = _names(match.group("names"))
            return f"{expected} is missing: found {name} where {expected} must come"
        return f"{name} is not allowed here"
    if "Character content other than whitespace is not allowed" in rest:
        return f"{name} contains text where only child elements are allowed"
    if "Element content is not allowed" in rest:
        return f"{name} must contain text only, not child elements"
    return f"{name}: {_short(rest)}"
