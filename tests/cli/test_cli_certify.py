"""``certify`` and ``leadership`` from the command line: start, show (and CSV), list, refusal of a second run."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from support.clock import Clock
from support.stopping import StopAfterWaits

from gateway.app import Gateway
from gateway.certification import Certifications
from gateway.certification.script import SANDBOX_CODE
from gateway.cli import ui
from gateway.config import Settings

Invoke = Callable[..., Result]
AGENCY = "000.00.00.H41"


def test_a_run_is_started_shown_exported_and_listed(
    upgraded_cli: Invoke, cli_settings: Settings, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("GATEWAY_CERTIFY_LARGE_BYTES", "20000")
    assert upgraded_cli("agencies", "add", AGENCY, "Ủy ban nhân dân tỉnh Nghệ An", "--level", "1").exit_code == 0

    started = upgraded_cli("certify", "start", AGENCY, "--minutes", "5")
    assert started.exit_code == 0, started.output
    run_id = started.output.split("Run ", 1)[1].split(" ", 1)[0]
    assert "receive:large" in started.output and "Grade: not connected" in started.output

    again = upgraded_cli("certify", "start", AGENCY)
    assert again.exit_code == 1 and "Client.CertificationInProgress" in again.stderr and run_id in again.stderr

    export = tmp_path / "run.csv"
    shown = upgraded_cli("certify", "show", run_id, "--csv", str(export))
    assert shown.exit_code == 0, shown.output
    with export.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {r["check"] for r in rows} >= {"receive:process", "status:recall", "send"}
    assert {r["state"] for r in rows} == {"pending"} and {r["run_id"] for r in rows} == {run_id}

    listed = upgraded_cli("certify", "list", AGENCY)
    assert listed.exit_code == 0 and run_id in listed.output and "active" in listed.output
    assert upgraded_cli("certify", "show", "no-such-run").exit_code == 1


def test_agencies_list_flags_the_sandbox_agency(upgraded_cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox a run creates is flagged in a column of its own, not only by "(sandbox)" in its name."""
    monkeypatch.setenv("GATEWAY_CERTIFY_LARGE_BYTES", "20000")
    assert upgraded_cli("agencies", "add", AGENCY, "Ủy ban nhân dân tỉnh Nghệ An", "--level", "1").exit_code == 0
    assert upgraded_cli("certify", "start", AGENCY, "--minutes", "5").exit_code == 0

    listed = upgraded_cli("agencies", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    header = next(line for line in lines if "test code" in line)
    assert "sandbox" in header.split("test code", 1)[1]
    [sandbox] = [line for line in lines if SANDBOX_CODE in line]
    [agency] = [line for line in lines if AGENCY in line]
    assert "SANDBOX" in sandbox and "SANDBOX" not in agency
    assert sandbox.index("SANDBOX") == header.index("sandbox"), "the mark is in the sandbox column"


def test_watch_finishes_a_run_past_its_deadline_and_show_lists_its_faults(
    upgraded_cli: Invoke, cli_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_CERTIFY_LARGE_BYTES", "20000")
    assert upgraded_cli("agencies", "add", AGENCY, "Ủy ban nhân dân tỉnh Nghệ An", "--level", "1").exit_code == 0
    gateway = Gateway.open(cli_settings)
    try:
        started_long_ago = Clock(datetime.now(UTC) - timedelta(hours=3))
        certifications = Certifications(gateway.exchange, large_bytes=20000, clock=started_long_ago)
        run = certifications.start(AGENCY, "operator", timedelta(minutes=5))
        assert certifications.record_fault(AGENCY, "getDocument", "Client.NotFound", "No item 'x'")
    finally:
        gateway.db.dispose()
    one_round = StopAfterWaits(1)
    monkeypatch.setattr(ui, "stop_on_signals", lambda: one_round)

    watched = upgraded_cli("certify", "watch", "--interval", "0.05")
    assert watched.exit_code == 0, watched.output
    assert "Driving certification runs (Ctrl+C to stop)" in watched.stderr and one_round.timeouts == [0.05]

    shown = upgraded_cli("certify", "show", run.run_id)
    assert shown.exit_code == 0, shown.output
    assert ", finished " in shown.output and "│ pending" not in shown.output, "every check decided, as failed"
    assert "getDocument: Client.NotFound No item 'x'" in shown.output
    assert list(tmp_path.glob("*.csv")) == [], "no --csv, no file"
    listed = upgraded_cli("certify", "list")
    assert run.run_id in listed.output and "finished" in listed.output and "active" not in listed.output
