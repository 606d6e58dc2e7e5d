"""A live gateway for the agent and its SOAP client, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.live import LiveGateway, live_gateway_for

from gateway.config import Settings


@pytest.fixture
def gateway(tmp_path: Path, db_url: str) -> Iterator[LiveGateway]:
    """Leases last one second, so a test can let an unacknowledged item come back."""
    settings = Settings(data_dir=tmp_path / "var", database_url=db_url, lease_seconds=1)
    with live_gateway_for(settings) as live:
        yield live
