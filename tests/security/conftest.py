"""One gateway of each kind (development server, gunicorn with 2 workers) per test module, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from security_support import SERVERS, Server, running


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(request.param, tmp_path_factory.mktemp(request.param) / "var") as started:
        yield started
