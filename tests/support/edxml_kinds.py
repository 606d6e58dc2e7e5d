"""Which reader applies to an edXML file, for tests that feed every sample to every reader.

The gateway never needs this (the SOAP operation says what it expects), so it lives here.
"""

from __future__ import annotations

from pathlib import Path

from gateway.edxml.normalize import MessageKind, normalize
from gateway.edxml.parsing import parse


def message_kind(source: Path | bytes) -> MessageKind:
    """``"status"`` or ``"document"``: which reader (and schema) applies. Raises MalformedEdxml only."""
    return normalize(parse(source).root)
