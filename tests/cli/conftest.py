"""Run ``edxml-gateway`` in-process with click's CliRunner against a test database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.config import Settings

Invoke = Callable[..., Result]


@pytest.fixture
def cli_settings(db_url: str, tmp_path: Path) -> Settings:
    """The settings every command of a test works on (both backends through ``db_url``)."""
    return Settings(data_dir=tmp_path / "var", database_url=db_url)


@pytest.fixture
def cli(cli_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """``cli("agencies", "list")`` runs the command on the test store and returns click's Result."""
    for name in ("GATEWAY_DATA_DIR", "GATEWAY_DATABASE_URL", "EDXML_GATEWAY_URL", "EDXML_AGENCY", "EDXML_SECRET"):
        monkeypatch.delenv(name, raising=False)

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        base = ["--data-dir", str(cli_settings.data_dir), "--database-url", cli_settings.database_url]
        return CliRunner().invoke(main, [*base, *args], env=env)

    return invoke


@pytest.fixture
def upgraded_cli(cli: Invoke) -> Invoke:
    """``cli`` on a migrated, empty store."""
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    return cli
