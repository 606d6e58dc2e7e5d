"""What every command module of the CLI shares: the consoles, the one-line failure, the settings and the store.

Output goes through rich consoles (tables, progress bars) with ``markup=False`` wherever text
comes from agencies or the database, so a name with brackets is printed as it is.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import Settings
from gateway.store.database import Database

EXIT_INTERNAL = 70
"""Exit status for a bug (sysexits EX_SOFTWARE), distinct from 1 (refused) and 2 (usage)."""
EXIT_USAGE = 2
"""click's exit status for a usage error; bad settings are one too."""


def console(stderr: bool) -> Console:
    """A console that, when piped or captured, is wide enough for tables not to fold codes and ids."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, width=width)


def out() -> Console:
    """The console for results (stdout, what scripts capture)."""
    return console(stderr=False)


def err() -> Console:
    """The console for progress, notes and errors (stderr)."""
    return console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with ``message`` as one line on stderr and exit status ``code``."""
    err().print(message, markup=False)
    raise click.exceptions.Exit(code)


def now() -> datetime:
    """The current time, timezone-aware UTC (what the store records)."""
    return datetime.now(UTC)


def progress(target: Console) -> Progress:
    """A progress bar with count and elapsed time, left on screen when done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=target,
        transient=False,
    )


@dataclass
class Options:
    """Group-level options; settings are built on first use so ``--help`` never touches the store."""

    overrides: dict[str, object] = field(default_factory=dict)

    def settings(self) -> Settings:
        return Settings.from_env(None, **self.overrides)


def settings_of(ctx: click.Context) -> Settings:
    """The settings of this invocation: ``GATEWAY_*`` with ``--data-dir``/``--database-url`` on top."""
    options = ctx.find_object(Options) or Options()
    return options.settings()


def open_database(settings: Settings, require_schema: bool = True) -> Database:
    """Open the store; refuse early and clearly when it is unreachable or not migrated yet."""
    db = Database(settings.database_url)
    shown = db.url.render_as_string(hide_password=True)
    try:
        has_schema = inspect(db.engine).has_table("agencies")
    except SQLAlchemyError as error:
        fail(f"error: cannot open the database {shown}: {getattr(error, 'orig', None) or error}")
    if require_schema and not has_schema:
        fail(f"error: the database {shown} has no gateway tables yet; run `edxml-gateway db upgrade` first.")
    return db


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so a long-running command can finish its step and stop."""
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop
