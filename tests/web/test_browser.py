"""The dashboard in a real browser: headless Chromium logs in, renders the page, takes a screenshot.

What a browser adds over parsing the HTML: Basic login from the URL works, the page renders
with its stylesheet despite the strict Content-Security-Policy (the header is dark red only if
the inline style's hash is right), and the DOM Chromium builds holds the store's numbers.
Skipped where Debian's ``chromium`` is not installed (``tools/run-tests`` installs it).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import urllib.parse
import zlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import lxml.html
import pytest
from web_support import CAO_BANG, NGHE_AN, PASSWORD, Live, scripted_exchange, serving

from gateway.config import Settings

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
WIDTH, HEIGHT = 1280, 2000
HEADER_RED = (0x8B, 0x1C, 0x1C)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install chromium; tools/run-tests does it)"
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, timeout=120, check=False)


# -- a small PNG reader: enough for Chromium's 8-bit RGB/RGBA screenshots -------------------------


def _paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
    if pa <= pb and pa <= pc:
        return left
    return up if pb <= pc else up_left


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of a non-interlaced 8-bit truecolour PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat, header = 8, bytearray(), b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunk = data[position + 8 : position + 8 + length]
        assert zlib.crc32(kind + chunk) == struct.unpack(">I", data[position + 8 + length : position + 12 + length])[0]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0) and colour in (2, 6), f"unexpected PNG format {depth=} {colour=}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        kind, filtered = line[0], line[1:]
        if kind == 0:
            row = bytes(filtered)
        elif kind == 2:
            row = bytes((a + b) & 0xFF for a, b in zip(filtered, previous, strict=True))
        else:
            out = bytearray(filtered)
            for i in range(stride):
                left = out[i - bpp] if i >= bpp else 0
                up = previous[i]
                if kind == 1:
                    out[i] = (out[i] + left) & 0xFF
                elif kind == 3:
                    out[i] = (out[i] + ((left + up) >> 1)) & 0xFF
                else:
                    up_left = previous[i - bpp] if i >= bpp else 0
                    out[i] = (out[i] + _paeth(left, up, up_left)) & 0xFF
            row = bytes(out)
        rows.append(row)
        previous = row
    return width, height, rows


def _colours(rows: list[bytes], bpp: int) -> set[tuple[int, int, int]]:
    """The distinct RGB colours of ``rows`` (alpha ignored)."""
    found: set[tuple[int, int, int]] = set()
    for row in rows:
        found.update(zip(row[0::bpp], row[1::bpp], row[2::bpp], strict=True))
    return found


# -- the test -------------------------------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path, sqlite_url: str) -> Iterator[Live]:
    settings = Settings(
        data_dir=tmp_path / "var", database_url=sqlite_url, ack_overdue_hours=0, operator_password=PASSWORD
    )
    with serving(settings) as gateway:
        yield gateway


def test_chromium_logs_in_and_renders_the_store_numbers(live: Live, tmp_path: Path) -> None:
    document_id = scripted_exchange(live, due=date(2099, 12, 31))
    host = live.base.removeprefix("http://")
    url = f"http://operator:{urllib.parse.quote(PASSWORD, safe='')}@{host}/dashboard"

    dumped = _chromium(tmp_path, "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr.decode(errors="replace")[-2000:]
    page = lxml.html.fromstring(dumped.stdout.decode("utf-8"))
    numbers = {
        ident: int(page.get_element_by_id(ident).text_content())
        for ident in ("in-flight-documents", "in-flight-copies", "overdue-total", "failed-total", "queue-total")
    }
    assert numbers == {
        "in-flight-documents": 1,
        "in-flight-copies": 2,
        "overdue-total": 1,
        "failed-total": 0,
        "queue-total": 3,
    }
    [document] = page.xpath("//tr[@data-document]")
    assert document.get("data-document") == document_id
    assert {r.get("data-recipient"): r.get("data-status") for r in document.xpath(".//tr[@data-recipient]")} == {
        NGHE_AN: "05",
        CAO_BANG: "",
    }
    assert "Ủy ban nhân dân tỉnh Nghệ An" in document.text_content()

    screenshot = tmp_path / "dashboard.png"
    shot = _chromium(tmp_path, f"--screenshot={screenshot}", url)
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    data = screenshot.read_bytes()
    width, height, rows = png_pixels(data)
    assert (width, height) == (WIDTH, HEIGHT)
    bpp = len(rows[0]) // width
    colours = _colours(rows, bpp)
    assert len(colours) > 50, f"a blank or nearly blank page: {len(colours)} colours"
    header = _colours(rows[5:40], bpp)
    assert HEADER_RED in header, "the stylesheet applied (its CSP hash is right)"


def test_chromium_without_the_login_gets_no_numbers(live: Live, tmp_path: Path) -> None:
    scripted_exchange(live)
    dumped = _chromium(tmp_path, "--dump-dom", f"{live.base}/dashboard")
    assert dumped.returncode == 0
    text = dumped.stdout.decode("utf-8")
    assert "in-flight-documents" not in text and "Nghệ An" not in text
