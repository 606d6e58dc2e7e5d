"""Namespace URIs and element-name helpers for edXML (QCVN 102:2016, docs/edxml-profile.md §2)."""

from __future__ import annotations

QCVN = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
"""The edXML namespace of QCVN 102:2016."""

DSIG = "http://www.w3.org/2000/09/xmldsig#"
"""XML-DSig: hand-written samples put ``Signature`` here; the SDK leaves it in :data:`QCVN`."""

XLINK = "http://www.w3.org/1999/xlink"
"""Only on ``Reference/@xlink:href`` in the SOAP hub profile."""

PREFIXES: dict[str | None, str] = {None: QCVN, "ds": DSIG, "xlink": XLINK}
"""Prefixes for trees the gateway builds, so libxml2 error paths read ``/*/ds:Signature``."""


def q(local: str) -> str:
    """Clark name ``{QCVN}local``, the form lxml uses for tags."""
    return f"{{{QCVN}}}{local}"


def local_name(tag: object) -> str:
    """Local part of an lxml tag; empty for comments and processing instructions."""
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def namespace_of(tag: str) -> str | None:
    """Namespace URI of a Clark name, ``None`` for an unqualified name."""
    return tag[1:].partition("}")[0] if tag.startswith("{") else None
