"""Fixtures for the reliability tests; the machinery itself is in ``reliability_support``.

Gateways here are real ``edxml-gateway serve`` subprocesses (or, where the test needs to choose
Settings the CLI does not expose, a threaded server in this process), each on its own data dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_support import GatewayFactory, GatewayProcess


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[GatewayFactory]:
    """``gateway_process(workers=..., database_url=..., env=...)`` starts a gateway; all are stopped after the test."""
    started: list[GatewayProcess] = []

    def start(name: str = "var", **options: object) -> GatewayProcess:
        gateway = GatewayProcess(tmp_path / name, **options)  # type: ignore[arg-type]
        started.append(gateway)
        return gateway.start()

    try:
        yield start
    finally:
        for gateway in started:
            gateway.stop()
