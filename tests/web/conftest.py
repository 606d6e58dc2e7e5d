"""Fixtures for the dashboard tests: a live gateway with an operator password, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web_support import PASSWORD, Live, serving

from gateway.config import Settings


@pytest.fixture
def ack_overdue_hours() -> int:
    """Hours an item may wait unacknowledged; 0 makes every unacknowledged copy overdue at once."""
    return 0


@pytest.fixture
def web_settings(tmp_path: Path, db_url: str, ack_overdue_hours: int) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=db_url,
        lease_seconds=60,
        ack_overdue_hours=ack_overdue_hours,
        operator_password=PASSWORD,
    )


@pytest.fixture
def live(web_settings: Settings) -> Iterator[Live]:
    with serving(web_settings) as gateway:
        yield gateway
