"""``serve``: the demo preparation and the choice of server (the servers themselves are replaced)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import Result
from sqlalchemy import func, select
from support.postgres import libpq_dsn

from gateway import directory
from gateway.cli import serve as serve_module
from gateway.config import Settings
from gateway.exchange.service import ExchangeService
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, Credential

Invoke = Callable[..., Result]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Records which server ``serve`` would start, with its arguments, instead of starting it."""
    calls: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(serve_module, "_serve_development", lambda *args: calls.append(("development", args)))
    monkeypatch.setattr(serve_module, "_serve_gunicorn", lambda *args: calls.append(("gunicorn", args)))
    return calls


def _demo_entries(settings: Settings) -> list[dict[str, str]]:
    path = settings.data_dir / "demo-credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries: list[dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return entries


def test_demo_prepares_a_usable_gateway_and_is_idempotent(
    cli: Invoke, cli_settings: Settings, served: list[tuple[str, tuple[Any, ...]]]
) -> None:
    first = cli("serve", "--demo", "--port", "8099")
    assert first.exit_code == 0, first.output
    assert "WSDL: http://127.0.0.1:8099/soap?wsdl" in first.stdout
    entries = _demo_entries(cli_settings)
    assert [e["agency"] for e in entries] == ["000.00.00.G22", "000.00.00.H41", "000.00.00.H14"]
    assert all(e["secret"] in first.stdout for e in entries)
    assert cli_settings.blob_dir is not None
    service = ExchangeService(Database(cli_settings.database_url), BlobStore(cli_settings.blob_dir), cli_settings)
    for entry in entries:
        assert service.authenticate(entry["agency"], entry["secret"]).code == entry["agency"]
    assert served == [("development", (served[0][1][0], "127.0.0.1", 8099))]

    second = cli("serve", "--demo", "--port", "8099")
    assert second.exit_code == 0, second.output
    assert _demo_entries(cli_settings) == entries
    with Database(cli_settings.database_url).transaction() as session:
        shipped = len(directory.read_rows(directory.SHIPPED_DIRECTORY))
        assert session.scalar(select(func.count()).select_from(Agency)) == shipped
        assert session.scalar(select(func.count()).select_from(Credential)) == 3


def test_demo_issues_new_secrets_when_the_file_is_lost(
    cli: Invoke, cli_settings: Settings, served: list[tuple[str, tuple[Any, ...]]]
) -> None:
    assert cli("serve", "--demo").exit_code == 0
    old = _demo_entries(cli_settings)
    (cli_settings.data_dir / "demo-credentials.json").unlink()
    assert cli("serve", "--demo").exit_code == 0
    new = _demo_entries(cli_settings)
    assert [e["secret"] for e in new] != [e["secret"] for e in old]


def test_serve_needs_a_migrated_store(cli: Invoke, served: list[tuple[str, tuple[Any, ...]]]) -> None:
    result = cli("serve")
    assert result.exit_code == 1 and "db upgrade" in result.stderr
    assert served == []


def test_serve_warns_when_postgresql_will_not_vacuum_the_gateways_tables(
    upgraded_cli: Invoke, cli_settings: Settings, served: list[tuple[str, tuple[Any, ...]]]
) -> None:
    expected: list[str] = []
    if cli_settings.database_url.startswith("postgresql"):
        with psycopg.connect(libpq_dsn(cli_settings.database_url), autocommit=True) as admin:
            row = admin.execute("SELECT current_database(), current_setting('autovacuum')").fetchone()
            assert row is not None
            admin.execute(f'ALTER DATABASE "{row[0]}" SET track_counts = off')
        expected = ["autovacuum and track_counts"] if row[1] == "off" else ["track_counts"]
    result = upgraded_cli("serve")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert [line.split("PostgreSQL runs with ")[1].split(" off,")[0] for line in warnings] == expected
    assert all("VACUUM ANALYZE" in line for line in warnings)
    assert len(served) == 1, "a warning, not a refusal: serving goes on"


def test_the_vacuum_warning_never_stops_serve_when_the_database_is_gone(capsys: pytest.CaptureFixture[str]) -> None:
    gone = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
    db = Database(gone)
    try:
        serve_module._warn_if_never_vacuumed(db)
    finally:
        db.dispose()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ("development", ("127.0.0.1", 8080))),
        (("--workers", "4", "--host", "0.0.0.0"), ("gunicorn", ("0.0.0.0", 8080, 4, 120))),
        (("--production", "--timeout", "30"), ("gunicorn", ("127.0.0.1", 8080, 1, 30))),
    ],
)
def test_serve_picks_the_server(
    upgraded_cli: Invoke,
    served: list[tuple[str, tuple[Any, ...]]],
    args: tuple[str, ...],
    expected: tuple[str, tuple[Any, ...]],
) -> None:
    result = upgraded_cli("serve", *args)
    assert result.exit_code == 0, result.output
    [(kind, call)] = served
    assert (kind, call[1:]) == expected
    assert isinstance(call[0], Settings)


def test_python_dash_m_runs_the_same_cli() -> None:
    """``python -m gateway.cli`` is the console script (for environments without the script on PATH)."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: edxml-gateway ")
    for command in ("serve", "db", "agencies", "credentials", "report", "audit", "send", "pending", "history"):
        assert f"  {command} " in result.stdout
