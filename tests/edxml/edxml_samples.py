"""Shared helpers for the edXML tests (imported by name: pytest puts this directory on sys.path)."""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
VALID = SAMPLES / "valid"
INVALID = SAMPLES / "invalid"


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first occurrence of ``needle`` in a sample, so tests do not hard-code lines."""
    text = path.read_text(encoding="utf-8")
    index = text.index(needle)
    return text.count("\n", 0, index) + 1
