"""``edxml-gateway``: run the gateway, administer it, and talk to it as an agency would.

Operator commands (serve, db, agencies, credentials, report, audit) work on the store named by
the ``GATEWAY_*`` environment or ``--data-dir``/``--database-url``. Client commands (send,
pending, fetch, ack, status, history) call a running gateway over SOAP with zeep, exactly as an
agency's software would, so they double as a smoke test of the published contract.

Every failure ends with one clear line on stderr and a non-zero exit, never a traceback: the
people running this are clerks and operators, not Python developers. The commands live in
:mod:`~gateway.cli.serve`, :mod:`~gateway.cli.admin`, :mod:`~gateway.cli.audit` and
:mod:`~gateway.cli.client`; this module holds the group, its options and that error handling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from gateway import directory
from gateway.cli import admin, audit, client, serve, ui
from gateway.cli.agent import agent
from gateway.cli.blobs import blobs_group
from gateway.cli.certify import certify
from gateway.cli.federation import demo_network, peers_group, relay_group
from gateway.cli.leadership import leadership
from gateway.client import Fault
from gateway.config import SettingsError
from gateway.errors import GatewayError


class _Cli(click.Group):
    """Turns every error a command lets through into one line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except SettingsError as error:
            ui.fail(f"error: {error}", code=ui.EXIT_USAGE)
        except Fault as fault:
            ui.fail(str(fault))
        except directory.DirectoryError as error:
            ui.fail(f"error: {error.message}")
        except GatewayError as error:
            ui.fail(f"error {error.code}: {error.message}")
        except SQLAlchemyError as error:
            ui.fail(f"database error: {type(error).__name__}: {getattr(error, 'orig', None) or error}")
        except OSError as error:
            ui.fail(f"error: {error.strerror or error}{f': {error.filename}' if error.filename else ''}")
        except Exception as error:
            ui.fail(f"internal error ({type(error).__name__}): {error}", code=ui.EXIT_INTERNAL)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Data directory (env GATEWAY_DATA_DIR)."
)
@click.option("--database-url", help="SQLAlchemy database URL (env GATEWAY_DATABASE_URL; default SQLite in data dir).")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, database_url: str | None) -> None:
    """edXML document exchange gateway (QCVN 102:2016): operate it, or call it as an agency."""
    overrides: dict[str, object] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url:
        overrides["database_url"] = database_url
    ctx.obj = ui.Options(overrides)


main.add_command(serve.serve)
for _command in (
    *admin.COMMANDS,
    audit.audit_group,
    *client.COMMANDS,
    blobs_group,
    peers_group,
    relay_group,
    demo_network,
    agent,
    certify,
    leadership,
):
    main.add_command(_command)
