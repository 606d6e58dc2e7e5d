"""``edxml-gateway agent``: run the reference agency client, or queue a status report for it."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from gateway.agent import Folders, queue_report, run_agent
from gateway.cli import ui
from gateway.client import AgencyClient

DEFAULT_URL = "http://127.0.0.1:8080/soap"


@click.group()
def agent() -> None:
    """The reference agency client: a folder kept in step with the gateway."""


@agent.command("run")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The agent's folder (inbox/, outbox/, report/ ... are created in it).",
)
@click.option(
    "--url",
    envvar="EDXML_GATEWAY_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Gateway SOAP endpoint (env EDXML_GATEWAY_URL).",
)
@click.option("--agency", envvar="EDXML_AGENCY", required=True, help="Your agency code (env EDXML_AGENCY).")
@click.option("--secret", envvar="EDXML_SECRET", required=True, help="Agency secret (env EDXML_SECRET).")
@click.option(
    "--interval",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between polls when nothing is waiting.",
)
def agent_run(directory: Path, url: str, agency: str, secret: str, interval: float) -> None:
    """Poll, save what arrives, send outbox/, report statuses of report/; stop with Ctrl+C or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = ui.stop_on_signals()
    folders = Folders(directory)
    click.echo(f"Agent for {agency} on {url}: folder {directory} (Ctrl+C to stop)", err=True)
    run_agent(AgencyClient(url, agency, secret), folders, interval, stop)


@agent.command("report")
@click.option(
    "--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path), help="The agent's folder."
)
@click.argument("document_id")
@click.argument("code")
@click.option("--description", help="What happened (required for 02 and 16).")
@click.option("--staff", help="Name of the person who handled it.")
@click.option("--department", help="Their department.")
def agent_report(
    directory: Path, document_id: str, code: str, description: str | None, staff: str | None, department: str | None
) -> None:
    """Queue a status report (03-06, 02, 15/16, or 13 as sender) for the running agent to make."""
    path = queue_report(Folders(directory), document_id, code, description, staff, department)
    click.echo(f"Queued status {code} for {document_id}: {path}")
