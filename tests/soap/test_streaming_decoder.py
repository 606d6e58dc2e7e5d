"""The streaming base64 decoder: any split of the text decodes the same, padding ends the data."""

from __future__ import annotations

import base64
import io
import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import MalformedEdxml
from gateway.soap.streaming import _Base64ToFile


class _Staging(io.BytesIO):
    temp_path = None

    def discard(self) -> None:
        self.close()


def decode(pieces: list[bytes]) -> bytes:
    out = _Staging()
    decoder = _Base64ToFile(out)
    for piece in pieces:
        decoder.feed(piece)
    decoder.finish()
    return out.getvalue()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=6))
def test_any_split_decodes_like_one_piece(data: bytes, cuts: list[int]) -> None:
    text = base64.encodebytes(data)
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode(pieces) == data


@pytest.mark.parametrize(
    "pieces",
    [[b"QUI=", b"QUJD"], [b"QUJ"], [b"QU!D"], [b"Q=JD"], [b"QUI=QUJD"]],
    ids=["data-after-padding", "unfinished-quantum", "bad-character", "padding-inside", "padding-then-data"],
)
def test_invalid_base64_is_refused(pieces: list[bytes]) -> None:
    with pytest.raises(MalformedEdxml, match="base64"):
        decode(pieces)


def test_large_payload_in_chunks() -> None:
    data = os.urandom(300_000)
    text = base64.b64encode(data)
    assert decode([text[i : i + 65_536] for i in range(0, len(text), 65_536)]) == data
