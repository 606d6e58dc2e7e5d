"""A legacy stack earns the top grade: PHP ext-soap desk software, scripted as a clerk works."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.letters import official_letter
from support.live import NGHE_AN, LiveGateway, live_gateway_for, secret_of

from gateway.certification import Certifications
from gateway.certification.script import SANDBOX_CODE
from gateway.config import Settings
from gateway.exchange.service import ExchangeService
from gateway.reports import REPORTS_STATUS
from gateway.store.blobs import BlobStore

PHP = shutil.which("php")
CLIENT = Path(__file__).resolve().parents[1] / "interop" / "php" / "certify.php"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(PHP is None, reason="php not installed (tests/interop/install.sh installs it)"),
]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[LiveGateway]:
    settings = Settings(
        data_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'gw.sqlite3'}", certify_large_bytes=2_000_000
    )
    with live_gateway_for(settings) as live:
        yield live


def test_php_desk_software_earns_the_top_grade(gateway: LiveGateway, tmp_path: Path) -> None:
    reply = tmp_path / "reply.edxml"
    reply.write_bytes(official_letter(NGHE_AN, [SANDBOX_CODE], number="88"))
    assert gateway.settings.blob_dir is not None
    exchange = ExchangeService(gateway.db, BlobStore(gateway.settings.blob_dir), gateway.settings)
    certifications = Certifications(exchange, large_bytes=gateway.settings.certify_large_bytes)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            certifications.advance_active()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    env = {**os.environ, "INTEROP_CODE": NGHE_AN, "INTEROP_SECRET": secret_of(NGHE_AN)}
    try:
        done = subprocess.run(
            [str(PHP), str(CLIENT), gateway.wsdl, str(reply)], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        stop.set()
        watcher.join(5)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"grade: {REPORTS_STATUS}" in done.stdout, done.stdout[-3000:]
