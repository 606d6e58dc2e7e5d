"""The operator commands of the network of gateways, in-process with click's runner, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import select

from gateway.cli import main
from gateway.exchange.credentials import secret_matches
from gateway.store.database import Database
from gateway.store.models import AuditEntry, OutboxConsignment, Peer


def _cli(db_url: str, tmp_path: Path, *args: str, **env: str) -> Result:
    base = ["--data-dir", str(tmp_path / "var"), "--database-url", db_url]
    return CliRunner().invoke(main, [*base, *args], env={"GATEWAY_INSTANCE_ID": "national", **env})


def test_peers_agencies_home_and_relay_commands(db_url: str, tmp_path: Path) -> None:
    assert _cli(db_url, tmp_path, "db", "upgrade").exit_code == 0
    added = _cli(db_url, tmp_path, "peers", "add", "HA", "--name", "Tỉnh A")
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip().splitlines()[-1]
    db = Database(db_url)
    try:
        with db.transaction(readonly=True) as session:
            peer = session.scalars(select(Peer)).one()
            assert (peer.instance_id, peer.role) == ("HA", "provincial")
            assert peer.secret_hash is not None and secret_matches(secret, peer.secret_hash)
        again = _cli(db_url, tmp_path, "peers", "add", "HA", "--name", "again")
        assert again.exit_code == 1 and "already registered" in again.output
        assert "HA" in _cli(db_url, tmp_path, "peers", "list").stdout

        home = _cli(db_url, tmp_path, "agencies", "add", "000.00.01.H41", "Sở", "--level", "2", "--home", "HA")
        assert home.exit_code == 0, home.output
        listed = _cli(db_url, tmp_path, "agencies", "list").stdout
        assert "000.00.01.H41" in listed and "HA" in listed

        status = _cli(db_url, tmp_path, "relay", "status", "--json")
        assert status.exit_code == 0 and json.loads(status.stdout) == []
        missing = _cli(db_url, tmp_path, "relay", "requeue", "00000000-0000-0000-0000-000000000000")
        assert missing.exit_code == 1 and "no failed consignment" in missing.output
        refused = _cli(db_url, tmp_path, "relay", "--once", GATEWAY_ROLE="provincial")
        assert refused.exit_code == 1 and "GATEWAY_UPSTREAM_URL" in refused.output

        with db.transaction(readonly=True) as session:
            actions = [a for a in session.scalars(select(AuditEntry.action))]
            assert "peer_add" in actions and "agency_add" in actions
            assert session.scalars(select(OutboxConsignment)).first() is None
    finally:
        db.dispose()
