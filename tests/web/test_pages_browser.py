"""The certificate and the leadership page in headless Chromium: rendered, styled, numbers in the DOM."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.html
import pytest
from test_browser import CHROMIUM, HEADER_RED, _chromium, _colours, png_pixels
from web_support import NGHE_AN, PASSWORD, Live, scripted_exchange, serving

from gateway.certification import Certifications
from gateway.config import Settings

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install chromium; tools/run-tests does it)"
)


@pytest.fixture
def live(tmp_path: Path, sqlite_url: str) -> Iterator[Live]:
    settings = Settings(
        data_dir=tmp_path / "var", database_url=sqlite_url, operator_password=PASSWORD, certify_large_bytes=50_000
    )
    with serving(settings) as gateway:
        yield gateway


def _url(live: Live, path: str) -> str:
    host = live.base.removeprefix("http://")
    return f"http://operator:{urllib.parse.quote(PASSWORD, safe='')}@{host}{path}"


def _screenshot_is_styled(tmp_path: Path, url: str, name: str) -> None:
    screenshot = tmp_path / f"{name}.png"
    shot = _chromium(tmp_path, f"--screenshot={screenshot}", url)
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    width, _height, rows = png_pixels(screenshot.read_bytes())
    bpp = len(rows[0]) // width
    assert len(_colours(rows, bpp)) > 30, "a blank or nearly blank page"
    assert HEADER_RED in _colours(rows[5:40], bpp), "the stylesheet applied (its CSP hash is right)"


def test_the_certificate_renders_with_its_grade_and_checks(live: Live, tmp_path: Path) -> None:
    certifications: Certifications = live.app.certifications
    run = certifications.start(NGHE_AN, "operator", timedelta(minutes=5))
    url = _url(live, f"/certification?run={run.run_id}")

    dumped = _chromium(tmp_path, "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr.decode(errors="replace")[-2000:]
    page = lxml.html.fromstring(dumped.stdout.decode("utf-8"))
    assert page.get_element_by_id("agency").text_content() == NGHE_AN
    assert page.get_element_by_id("grade").text_content() == run.grade
    assert len(page.xpath("//td[@class='pending']")) == len(run.checks)
    _screenshot_is_styled(tmp_path, url, "certificate")


def test_the_leadership_page_draws_its_trend(live: Live, tmp_path: Path) -> None:
    scripted_exchange(live)
    today = datetime.now(UTC).date()
    url = _url(live, f"/leadership?from={today - timedelta(days=6)}&to={today + timedelta(days=1)}")

    dumped = _chromium(tmp_path, "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr.decode(errors="replace")[-2000:]
    page = lxml.html.fromstring(dumped.stdout.decode("utf-8"))
    row = page.xpath(f"//tr[@data-agency='{NGHE_AN}']")[0]
    assert row.xpath("td")[2].text_content() == "1"
    svg = page.xpath("//*[local-name()='svg' and @id='trend']")[0]
    assert len(svg.xpath(".//*[local-name()='rect' and @class='documents']")) == 8
    _screenshot_is_styled(tmp_path, url, "leadership")
