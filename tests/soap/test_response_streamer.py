"""Files streamed into an answer in place of their placeholders: one (getDocument) or several (getDocuments)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from gateway.soap.context import OutboundFile, RequestContext
from gateway.soap.streaming import ResponseStreamer


def _files(tmp_path: Path, *sizes: int) -> list[tuple[OutboundFile, bytes]]:
    made = []
    for index, size in enumerate(sizes):
        data = os.urandom(size)
        path = tmp_path / f"file-{index}"
        path.write_bytes(data)
        made.append((OutboundFile(path, size), data))
    return made


def _answer(streamer: ResponseStreamer, count: int) -> tuple[bytes, RequestContext]:
    """An answer as Spyne writes one: each registered file's placeholder in base64, in registration order."""
    context = RequestContext(streamer.placeholder, exchange=None, staged_document=None)  # type: ignore[arg-type]
    parts = [b"<r>"]
    for index in range(count):
        placeholder = context.stream_file(Path(f"/nowhere/{index}"), 0)
        parts.append(b"<edxml>%s</edxml>" % base64.b64encode(placeholder))
    return b"".join([*parts, b"</r>"]), context


@pytest.mark.parametrize("sizes", [(0,), (1,), (3 * 64 * 1024 + 5,), (10, 0, 200_000, 7)])
def test_each_file_takes_its_placeholders_place_and_the_length_is_exact(tmp_path: Path, sizes: tuple[int, ...]) -> None:
    streamer = ResponseStreamer()
    answer, _ = _answer(streamer, len(sizes))
    files = _files(tmp_path, *sizes)
    chunks, length = streamer.stream(answer, [file for file, _ in files])
    body = b"".join(chunks)
    expected = b"<r>" + b"".join(b"<edxml>%s</edxml>" % base64.b64encode(data) for _, data in files) + b"</r>"
    assert body == expected and length == len(expected)


def test_placeholders_differ_per_file_and_per_worker() -> None:
    first, second = ResponseStreamer(), ResponseStreamer()
    answer, context = _answer(first, 3)
    assert len(set(answer.split(b"<edxml>")[1:])) == 3
    assert base64.b64encode(second.placeholder) not in answer
    assert len(context.outbound) == 3


def test_an_answer_without_its_placeholders_is_sent_as_it_is(tmp_path: Path) -> None:
    streamer = ResponseStreamer()
    fault = b"<Fault>no such item</Fault>"
    chunks, length = streamer.stream(fault, [file for file, _ in _files(tmp_path, 10, 10)])
    assert b"".join(chunks) == fault and length == len(fault)


def test_an_answer_missing_some_placeholders_is_refused(tmp_path: Path) -> None:
    streamer = ResponseStreamer()
    answer, _ = _answer(streamer, 1)
    with pytest.raises(RuntimeError, match="1 of its 2 files"):
        streamer.stream(answer, [file for file, _ in _files(tmp_path, 10, 10)])
