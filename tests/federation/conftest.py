"""Fixtures: a three-instance network of real gateway processes, on SQLite (development server) or
PostgreSQL (gunicorn, two workers per instance).

``make_network(extra_env=...)`` builds and starts one (national, HA, HB; tests/federation/harness.py);
every process it started is stopped after the test, and when a test fails the tail of each
process's output is attached to the report.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from harness import HA, HB, NATIONAL, Network, build_network, start_network
from sqlalchemy import make_url
from support.postgres import libpq_dsn

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

NetworkFactory = Callable[..., Network]
SERVE_OPTIONS = {"sqlite": [], "postgres": ["--workers", "2", "--production"]}
"""SQLite instances run the development server; PostgreSQL ones gunicorn with two workers, as in production."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, show what every gateway process of the test said (the tail of its log)."""
    outcome = yield
    report = outcome.get_result()
    networks: list[Network] = getattr(item, "federation_networks", [])
    if report.failed and networks:
        for index, network in enumerate(networks):
            report.sections.append((f"gateway processes (network {index + 1})", network.logs()))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_urls(backend: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """One database per instance: SQLite files in each data dir, or fresh PostgreSQL databases (dropped after)."""
    instances = (NATIONAL, HA, HB)
    if backend == "sqlite":
        yield {i: f"sqlite:///{tmp_path / 'network' / i / 'data' / 'gateway.sqlite3'}" for i in instances}
        return
    base = make_url(os.environ.get("GATEWAY_TEST_PG_URL") or DEFAULT_PG_URL)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    maintenance = libpq_dsn(base, "postgres")
    try:
        admin = psycopg.connect(maintenance, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip(f"PostgreSQL not reachable at {base.host}:{base.port or 5432} (set GATEWAY_TEST_PG_URL)")
    names = {i: f"gw_fed_{i.lower()}_{uuid.uuid4().hex[:10]}" for i in instances}
    with admin:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {i: base.set(database=name).render_as_string(hide_password=False) for i, name in names.items()}
    finally:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=3) as admin:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_network(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, database_urls: dict[str, str]
) -> Iterator[NetworkFactory]:
    """``make_network(extra_env={...}, relays=True)``: the network built and started; stopped after the test."""
    started: list[Network] = []
    request.node.federation_networks = started

    def make(extra_env: dict[str, str] | None = None, relays: bool = True) -> Network:
        assert not started, "one network per test (the databases are per test)"
        network = build_network(tmp_path / "network", database_urls, extra_env, SERVE_OPTIONS[backend])
        started.append(network)
        start_network(network, relays=relays)
        return network

    try:
        yield make
    finally:
        for network in started:
            network.stop()


@pytest.fixture
def network(make_network: NetworkFactory) -> Network:
    """The network with its directories synchronised: every instance lists every agency."""
    built = make_network()
    built.wait_for_directory()
    return built
