"""Database setup: migrations match the models, transactions are atomic, failures map to Unavailable."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import bindparam, func, literal_column, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, StatementError
from store.conftest import INSERT_AGENCY, T0, agency_row
from support.postgres import libpq_dsn
from support.statements import counting

from gateway.errors import Unavailable
from gateway.store.database import UNAVAILABLE_MESSAGE, Database
from gateway.store.models import Agency, AuditEntry, Base, Document, UTCDateTime, table_of

MakeAgency = Callable[..., Agency]
MakeDocument = Callable[..., Document]


def _head() -> str:
    """The newest revision of the shipped migrations (one head: the chain must not fork)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from gateway.store.database import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


HEAD = _head()


def test_migration_matches_models(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == HEAD


def test_upgrade_twice_is_a_no_op(database: Database) -> None:
    database.upgrade()
    with database.transaction() as session:
        assert session.scalar(text("SELECT version_num FROM alembic_version")) == HEAD


def test_dialect_name(database: Database, db_url: str) -> None:
    assert database.dialect_name == ("sqlite" if db_url.startswith("sqlite") else "postgresql")


def test_rollback_leaves_nothing(database: Database, make_agency: MakeAgency) -> None:
    with pytest.raises(RuntimeError, match="boom"), database.transaction() as session:
        make_agency(session, "000.00.01.H01")
        raise RuntimeError("boom")
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Agency)) == 0


def test_commit_persists_and_objects_stay_readable(database: Database, make_agency: MakeAgency) -> None:
    with database.transaction() as session:
        agency = make_agency(session, "000.00.01.H01")
    assert agency.code == "000.00.01.H01"
    with database.transaction() as session:
        assert session.scalars(select(Agency.code)).all() == ["000.00.01.H01"]


def test_sender_and_edxml_document_id_are_unique(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    with database.transaction() as session:
        sender = make_agency(session, "000.00.01.H01")
        other = make_agency(session, "000.00.02.H01")
        make_document(session, sender, "000.00.01.H01,2026/123")
        make_document(session, other, "000.00.01.H01,2026/123")
    with pytest.raises(IntegrityError), database.transaction() as session:
        make_document(session, sender, "000.00.01.H01,2026/123")
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 2


def test_foreign_keys_are_enforced(database: Database, make_agency: MakeAgency) -> None:
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.execute(
            text("INSERT INTO credentials (agency_id, secret_hash, created_at) VALUES (999, 'x', :t)"),
            {"t": datetime.now(UTC)},
        )


def test_datetimes_come_back_aware_utc(database: Database) -> None:
    hanoi = timezone(timedelta(hours=7))
    at = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=hanoi)
    with database.transaction() as session:
        session.add(AuditEntry(at=at, actor="a", action="x", detail="{}", prev_hash="0" * 64, hash="1" * 64))
    with database.transaction() as session:
        stored = session.scalars(select(AuditEntry.at)).one()
    assert stored == at
    assert stored.tzinfo == UTC
    assert stored.hour == 2


def test_naive_datetimes_are_refused(database: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), database.transaction() as session:
        session.add(AuditEntry(at=datetime(2026, 1, 1), actor="a", action="x", detail="{}", prev_hash="0", hash="1"))
        session.flush()


def test_sqlite_pragmas(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        assert Path(db.url.database or "").parent.is_dir()
        with db.transaction() as session:
            assert session.scalar(text("PRAGMA journal_mode")) == "wal"
            assert session.scalar(text("PRAGMA foreign_keys")) == 1
            assert session.scalar(text("PRAGMA synchronous")) == 2
            assert session.scalar(text("PRAGMA busy_timeout")) == 5000
    finally:
        db.dispose()


def test_sqlite_has_no_vacuum_settings_to_report(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        assert db.vacuum_settings_off() == []
    finally:
        db.dispose()


@pytest.mark.postgres
def test_vacuum_settings_off_names_what_the_server_has_off(pg_url: str) -> None:
    libpq = libpq_dsn(pg_url)
    with psycopg.connect(libpq, autocommit=True) as admin:
        server_autovacuum = admin.execute("SHOW autovacuum").fetchone()
        database = admin.execute("SELECT current_database()").fetchone()
        assert server_autovacuum is not None and database is not None
        # autovacuum is the server's alone; track_counts a superuser may turn off for one database.
        admin.execute(f'ALTER DATABASE "{database[0]}" SET track_counts = off')
    autovacuum_off = ["autovacuum"] if server_autovacuum[0] == "off" else []
    db = Database(pg_url)
    try:
        assert db.vacuum_settings_off() == [*autovacuum_off, "track_counts"]
        with psycopg.connect(libpq, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database[0]}" RESET track_counts')
        db.dispose()  # pooled connections keep the setting they started with
        assert db.vacuum_settings_off() == autovacuum_off
    finally:
        db.dispose()


def test_unreachable_postgres_is_unavailable() -> None:
    db = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    try:
        with pytest.raises(Unavailable) as caught, db.transaction() as session:
            session.execute(text("SELECT 1"))
        assert caught.value.message == UNAVAILABLE_MESSAGE
        assert caught.value.code == "Server.Unavailable"
    finally:
        db.dispose()


def test_unopenable_sqlite_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite3").mkdir()  # a directory where the database file should be
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    try:
        with pytest.raises(Unavailable), db.transaction() as session:
            session.execute(text("SELECT 1"))
    finally:
        db.dispose()


@pytest.mark.slow
def test_sqlite_lock_held_past_busy_timeout_is_unavailable(sqlite_url: str) -> None:
    """Another process holding the write lock longer than busy_timeout: Unavailable, nothing stored."""
    db = Database(sqlite_url)
    db.upgrade()
    blocker = sqlite3.connect(db.url.database or "", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable), db.transaction() as session:
            session.execute(text("SELECT 1"))
        with pytest.raises(Unavailable), db.writing() as transaction:
            db.pipeline(transaction, [(INSERT_AGENCY, [agency_row("000.00.01.H01")])])
        blocker.execute("ROLLBACK")
        with db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Agency)) == 0
    finally:
        blocker.close()
        db.dispose()


def test_every_migration_downgrades_to_nothing_and_upgrades_again(db_url: str) -> None:
    """An operator rolling a release back runs the downgrades: each must undo its upgrade exactly."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    from gateway.store.database import MIGRATIONS_DIR

    database = Database(db_url)
    database.upgrade()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
        database.upgrade()
        with database.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() == HEAD
    finally:
        database.dispose()


def _cli_config(url: str | None = None, x_url: str | None = None) -> Any:
    """An alembic Config as ``alembic -c that.ini [-x url=...]`` builds it: no connection handed in."""
    from argparse import Namespace

    from alembic.config import Config

    from gateway.store.database import MIGRATIONS_DIR

    config = Config(cmd_opts=Namespace(x=[f"url={x_url}"] if x_url else []))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def test_the_alembic_cli_migrates_a_database_it_opens_itself(tmp_path: Path) -> None:
    """env.py's own path (its docstring): an operator runs alembic directly, by the ini's URL or ``-x url``."""
    from alembic import command

    for name, config in (
        ("ini", _cli_config(url=f"sqlite:///{tmp_path / 'ini.sqlite3'}")),
        ("x", _cli_config(url="sqlite:///unused.sqlite3", x_url=f"sqlite:///{tmp_path / 'x.sqlite3'}")),
    ):
        command.upgrade(config, "head")
        database = Database(f"sqlite:///{tmp_path / f'{name}.sqlite3'}")
        try:
            with database.transaction(readonly=True) as session:
                assert session.scalar(text("SELECT version_num FROM alembic_version")) == HEAD
        finally:
            database.dispose()
    assert not (tmp_path / "unused.sqlite3").exists(), "-x url wins over the ini's URL"


def test_the_alembic_cli_refuses_offline_sql_and_a_missing_url() -> None:
    from alembic import command

    with pytest.raises(RuntimeError, match="offline"):
        command.upgrade(_cli_config(url="sqlite://"), "head", sql=True)
    with pytest.raises(RuntimeError, match="no database URL"):
        command.upgrade(_cli_config(), "head")


def _hold_write_turn(db: Database, holding: threading.Event, release: threading.Event) -> threading.Thread:
    """A thread that opens a write transaction and keeps it until ``release`` is set."""

    def hold() -> None:
        with db.transaction() as session:
            session.execute(text("SELECT 1"))
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(30)
    return thread


def test_sqlite_writers_of_one_process_queue_for_their_turn_and_readers_do_not(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer waits on the process's writer lock, not in SQLite's busy handler; a reader never waits."""
    from gateway.store import database as database_module

    db = Database(sqlite_url)
    db.upgrade()
    holding, release = threading.Event(), threading.Event()
    holder = _hold_write_turn(db, holding, release)
    try:
        with db.transaction(readonly=True) as session:
            assert session.scalar(text("SELECT count(*) FROM agencies")) == 0, "a reader does not queue"
        monkeypatch.setattr(database_module, "SQLITE_BUSY_SECONDS", 0.2)
        with pytest.raises(Unavailable, match="busy or unreachable"), db.transaction() as session:
            session.execute(text("SELECT 1"))
        assert "no turn for an SQLite writer" in caplog.text, "refused by the writer lock, not by SQLite"
        caplog.clear()
        with pytest.raises(Unavailable, match="busy or unreachable"), db.writing():
            pass
        assert "no turn for an SQLite writer" in caplog.text, "the driver's transaction queues the same way"
        threading.Timer(0.3, release.set).start()
        monkeypatch.setattr(database_module, "SQLITE_BUSY_SECONDS", 30)
        with db.transaction() as session:  # gets its turn as soon as the holder commits
            session.execute(text("DELETE FROM agencies"))
    finally:
        release.set()
        holder.join(30)
        db.dispose()


# -- read_rows: one SELECT straight through the driver ------------------------------------------------

_AGENCIES_SINCE = (
    select(Agency.id, Agency.code, Agency.require_signature)
    .where(
        Agency.created_at <= bindparam("now", type_=UTCDateTime()), Agency.level == 1, Agency.code != bindparam("not")
    )
    .order_by(Agency.code)
)


def test_read_rows_binds_as_sqlalchemy_does(database: Database, make_agency: MakeAgency) -> None:
    """Datetime binds go through their type (SQLite stores text), literals and named binds land in place."""
    with database.transaction() as session:
        early, late = make_agency(session, "000.00.01.H01"), make_agency(session, "000.00.01.H02")
        make_agency(session, "000.00.01.H03")
        late.created_at = T0 + timedelta(days=2)
        early.require_signature = True
    params = {"now": T0 + timedelta(days=1), "not": "000.00.01.H03"}
    rows = database.read_rows(_AGENCIES_SINCE, params)
    with database.transaction(readonly=True) as session:
        expected = [tuple(row) for row in session.execute(_AGENCIES_SINCE, params)]
    assert [(i, code, bool(signs)) for i, code, signs in rows] == expected
    assert [code for _, code, _ in rows] == ["000.00.01.H01"]
    assert database.read_rows(_AGENCIES_SINCE, {**params, "now": T0 + timedelta(days=3)})[1][1] == "000.00.01.H02"


def test_read_rows_leaves_pooled_connections_transactional(db_url: str, make_agency: MakeAgency) -> None:
    """On PostgreSQL the read switches its connection to autocommit: the next transaction on it must
    still roll back as a whole (one pooled connection, so it is the same one)."""
    db = Database(db_url, pool_size=1, max_overflow=0)
    try:
        db.upgrade()
        assert db.read_rows(_AGENCIES_SINCE, {"now": T0, "not": ""}) == []
        with pytest.raises(RuntimeError, match="boom"), db.transaction() as session:
            make_agency(session, "000.00.01.H01")
            raise RuntimeError("boom")
        assert db.read_rows(_AGENCIES_SINCE, {"now": T0, "not": ""}) == []
    finally:
        db.dispose()


_AGENCIES_AMONG = (
    select(Agency.code, Agency.id)
    .where(
        Agency.code.in_(bindparam("codes", expanding=True)), Agency.created_at <= bindparam("now", type_=UTCDateTime())
    )
    .order_by(Agency.code)
)


def test_read_rows_expands_in_lists_per_call(database: Database, make_agency: MakeAgency) -> None:
    """An IN list of any length (the addressees of a send) is expanded on each call, and the other
    parameters still go through their bind processors, as SQLAlchemy's own execution does."""
    with database.transaction() as session:
        for code in ("000.00.01.H01", "000.00.01.H02", "000.00.01.H03"):
            make_agency(session, code)
    for codes in (["000.00.01.H02"], ["000.00.01.H03", "000.00.01.H01", "000.00.09.H99"], [], ["000.00.01.H02"]):
        params = {"codes": codes, "now": T0 + timedelta(days=1)}
        with database.transaction(readonly=True) as session:
            expected = [tuple(row) for row in session.execute(_AGENCIES_AMONG, params)]
        assert database.read_rows(_AGENCIES_AMONG, params) == expected
        assert [code for code, _ in expected] == sorted(c for c in codes if c != "000.00.09.H99")
    assert database.read_rows(_AGENCIES_AMONG, {"codes": ["000.00.01.H01"], "now": T0 - timedelta(days=1)}) == []


_DOCUMENT_DATES = select(
    Document.promulgation_date, Document.created_at, Document.due_date, Agency.active, Agency.code
).join(Agency, Agency.id == Document.sender_id)


def test_read_rows_converts_values_as_sqlalchemy_does(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    """Dates, UTC datetimes, NULLs and booleans come back as SQLAlchemy's own execution gives them
    (SQLite hands the driver strings and integers)."""
    with database.transaction() as session:
        make_document(session, make_agency(session, "000.00.01.H01"))
    with database.transaction(readonly=True) as session:
        expected = [tuple(row) for row in session.execute(_DOCUMENT_DATES)]
    rows = database.read_rows(_DOCUMENT_DATES, {})
    assert rows == expected
    assert rows[0][:4] == (date(2026, 11, 1), T0, None, True)
    assert type(rows[0][3]) is bool and rows[0][1].tzinfo is not None


def test_read_rows_is_seen_by_statement_listeners(database: Database, make_agency: MakeAgency) -> None:
    """Statement listeners (what tests count) see the read."""
    with database.transaction() as session:
        make_agency(session, "000.00.01.H01")
    with counting(database.engine) as executed:
        assert len(database.read_rows(_AGENCIES_SINCE, {"now": T0, "not": ""})) == 1
    assert len(executed) == 1 and executed[0].startswith("SELECT agencies.id")


@pytest.mark.postgres
def test_a_refused_lone_statement_raises_as_sqlalchemy_would_and_keeps_its_connection(pg_url: str) -> None:
    """PostgreSQL tells a refused statement from a lost connection: the caller gets the error SQLAlchemy
    raises, and the connection, sound, goes back to the pool in transaction mode (a rolled-back
    transaction on it leaves nothing), so a refused send costs no new server process."""
    db = Database(pg_url, pool_size=1, max_overflow=0)
    backend_pid = (select(func.pg_backend_pid()), {})
    try:
        db.upgrade()
        pid = db.read_rows(*backend_pid)[0][0]
        with pytest.raises(ProgrammingError) as refused:
            db.read_rows(select(literal_column("no_such_column")), {})
        assert isinstance(refused.value.orig, psycopg.errors.UndefinedColumn)
        db.write_alone([(INSERT_AGENCY, [agency_row("000.00.01.H01")])], backend_pid)
        with pytest.raises(IntegrityError):
            db.write_alone([(INSERT_AGENCY, [agency_row("000.00.01.H01")])], backend_pid)
        assert db.read_rows(*backend_pid)[0][0] == pid
        with pytest.raises(RuntimeError, match="boom"), db.transaction() as session:
            session.execute(text("DELETE FROM agencies"))
            raise RuntimeError("boom")
        with db.transaction(readonly=True) as session:
            assert list(session.scalars(select(Agency.code))) == ["000.00.01.H01"]
    finally:
        db.dispose()


def test_read_rows_on_unreachable_postgres_is_unavailable() -> None:
    db = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    try:
        with pytest.raises(Unavailable) as caught:
            db.read_rows(_AGENCIES_SINCE, {"now": T0, "not": ""})
        assert caught.value.code == "Server.Unavailable"
    finally:
        db.dispose()


def _terminate(pg_url: str, pid: int) -> None:
    """End a server process from outside, as a restart or an administrator would."""
    admin = Database(pg_url)
    try:
        with admin.transaction() as session:
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("write", [False, True], ids=["read_rows", "write_alone"])
def test_a_lone_statement_on_a_dropped_connection_is_unavailable_and_the_next_one_reconnects(
    pg_url: str, write: bool
) -> None:
    """read_rows and write_alone run on a pooled connection of their own: when the server has ended it,
    the clerk gets Unavailable (retry; nothing was written), and the next call reconnects."""
    db = Database(pg_url, pool_size=1, max_overflow=0)
    backend_pid = (select(func.pg_backend_pid()), {})

    def alone() -> int:
        rows = db.write_alone([(INSERT_AGENCY, [agency_row("000.00.01.H01")])], backend_pid) if write else None
        return int((rows or db.read_rows(*backend_pid))[0][0])

    try:
        db.upgrade()
        pid = db.read_rows(*backend_pid)[0][0]
        _terminate(pg_url, pid)
        with pytest.raises(Unavailable):
            alone()
        assert alone() != pid
    finally:
        db.dispose()


_RENAME = (
    update(table_of(Agency))
    .where(table_of(Agency).c.code == bindparam("code"))
    .values(name=bindparam("name"))
    .returning(table_of(Agency).c.code, table_of(Agency).c.name, table_of(Agency).c.created_at)
)


def test_pipeline_writes_in_the_sessions_transaction(database: Database, make_agency: MakeAgency) -> None:
    """Rows go in with their bind processors applied (UTC datetimes), alongside the session's own
    statements, are seen by statement listeners, and go with the transaction when it rolls back."""
    with counting(database.engine) as executed, database.transaction() as session:
        make_agency(session, "000.00.01.H01")
        database.pipeline(
            session,
            [
                (INSERT_AGENCY, [agency_row("000.00.01.H02"), agency_row("000.00.01.H03", level=2)]),
                (INSERT_AGENCY, []),
                (INSERT_AGENCY, [agency_row("000.00.01.H04")]),
            ],
        )
    assert sum(s.startswith("INSERT INTO agencies") for s in executed) == 3, executed
    with database.transaction(readonly=True) as session:
        rows = session.execute(select(Agency.code, Agency.level, Agency.created_at).order_by(Agency.code)).all()
    assert [tuple(r) for r in rows] == [
        ("000.00.01.H01", 1, T0),
        ("000.00.01.H02", 1, T0),
        ("000.00.01.H03", 2, T0),
        ("000.00.01.H04", 1, T0),
    ]
    with pytest.raises(RuntimeError, match="boom"), database.transaction() as session:
        database.pipeline(session, [(INSERT_AGENCY, [agency_row("000.00.01.H05")])])
        raise RuntimeError("boom")
    with database.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Agency)) == 4


def test_pipeline_refuses_a_row_as_sqlalchemy_would_and_leaves_nothing(database: Database) -> None:
    """A refused row (here a duplicate code, caught when PostgreSQL's pipeline is synchronised) is an
    IntegrityError, none of the batch stays, and the pooled connection serves the next transaction."""
    with database.transaction() as session:
        database.pipeline(session, [(INSERT_AGENCY, [agency_row("000.00.01.H01")])])
    with pytest.raises(IntegrityError), database.transaction() as session:
        database.pipeline(
            session,
            [
                (INSERT_AGENCY, [agency_row("000.00.01.H02")]),
                (INSERT_AGENCY, [agency_row("000.00.01.H03"), agency_row("000.00.01.H01")]),
            ],
        )
    with database.transaction() as session:
        database.pipeline(session, [(INSERT_AGENCY, [agency_row("000.00.01.H09")])])
    with database.transaction(readonly=True) as session:
        assert list(session.scalars(select(Agency.code).order_by(Agency.code))) == ["000.00.01.H01", "000.00.01.H09"]


def test_pipeline_then_runs_statements_after_the_inserts_and_returns_their_rows(
    database: Database, make_agency: MakeAgency
) -> None:
    """``then`` sees the rows just inserted, each statement's rows come back on their own (an UPDATE's
    RETURNING included), and values are converted as SQLAlchemy would."""
    then = select(Agency.code, Agency.created_at).where(Agency.level == bindparam("level")).order_by(Agency.code)
    with database.transaction() as session:
        make_agency(session, "000.00.01.H01")
        rows = database.pipeline(
            session,
            [(INSERT_AGENCY, [agency_row("000.00.01.H02", level=2), agency_row("000.00.01.H03", level=2)])],
            [(then, {"level": 2}), (then, {"level": 3}), (_RENAME, {"code": "000.00.01.H03", "name": "Sở Tư pháp"})],
        )
        assert rows == [[("000.00.01.H02", T0), ("000.00.01.H03", T0)], [], [("000.00.01.H03", "Sở Tư pháp", T0)]]
        assert database.pipeline(session, then=[(then, {"level": 3})]) == [[]]
        assert database.pipeline(session, [(INSERT_AGENCY, [agency_row("000.00.01.H04")])]) == []


def test_pipeline_with_then_refuses_a_row_as_sqlalchemy_would(database: Database) -> None:
    """A refused row aborts the pipeline before ``then``: the error is the row's, not a missing result."""
    then = select(func.count()).select_from(Agency)
    with database.transaction() as session:
        database.pipeline(session, [(INSERT_AGENCY, [agency_row("000.00.01.H01")])])
    with pytest.raises(IntegrityError), database.transaction() as session:
        database.pipeline(session, [(INSERT_AGENCY, [agency_row("000.00.01.H01")])], [(then, {})])
    with database.transaction() as session:
        assert database.pipeline(session, [(INSERT_AGENCY, [agency_row("000.00.01.H02")])], [(then, {})]) == [[(2,)]]


def test_pipeline_refuses_to_skip_python_side_defaults(database: Database) -> None:
    """A column whose default SQLAlchemy computes (agencies.active) cannot be left out: the driver
    would otherwise store NULL or fail, where the ORM stores the default."""
    row = agency_row("000.00.01.H01")
    del row["active"]
    with pytest.raises(ValueError, match="active"), database.transaction() as session:
        database.pipeline(session, [(INSERT_AGENCY, [row])])


@pytest.mark.postgres
def test_pipeline_on_a_dropped_connection_is_unavailable_and_the_next_transaction_reconnects(pg_url: str) -> None:
    """The server ends the session's connection before the pipeline is sent: the clerk gets
    Unavailable (retry), the dead connection leaves the pool, and the next write works."""
    db = Database(pg_url, pool_size=1, max_overflow=0)
    try:
        db.upgrade()
        with db.transaction() as session:
            session.execute(text("DELETE FROM agencies WHERE code = '000.00.01.H01'"))
        pid = db.read_rows(select(func.pg_backend_pid()), {})[0][0]
        _terminate(pg_url, pid)
        with pytest.raises(Unavailable), db.transaction() as session:
            db.pipeline(session, [(INSERT_AGENCY, [agency_row("000.00.01.H01")])])
        with db.transaction() as session:
            db.pipeline(session, [(INSERT_AGENCY, [agency_row("000.00.01.H01")])])
        assert db.read_rows(select(func.pg_backend_pid()), {})[0][0] != pid
        with db.transaction() as session:
            session.execute(text("DELETE FROM agencies WHERE code = '000.00.01.H01'"))
    finally:
        db.dispose()


# -- write_alone: a send's writes as one statement on PostgreSQL -----------------------------------


def _agencies(db: Database, *columns: Any, order_by: Any = Agency.code) -> list[tuple[Any, ...]]:
    """``columns`` of every agency, read in a transaction of their own."""
    with db.transaction(readonly=True) as session:
        return [tuple(row) for row in session.execute(select(*columns).order_by(order_by))]


@pytest.mark.postgres
def test_write_alone_writes_every_row_and_returns_the_last_statements_rows(
    pg_url: str, make_agency: MakeAgency
) -> None:
    """The INSERTs and the returning statement go as one statement (seen so by listeners), committed
    on its own, each INSERT's rows in their order (ids follow it); the rows come back converted as
    SQLAlchemy would; the pooled connection is back in transaction mode afterwards (a rolled-back
    transaction on it leaves nothing)."""
    db = Database(pg_url, pool_size=1, max_overflow=0)
    try:
        db.upgrade()
        with db.transaction() as session:
            make_agency(session, "000.00.01.H01")
        inserts = [
            (INSERT_AGENCY, [agency_row("000.00.01.H04"), agency_row("000.00.01.H03", level=2)]),
            (INSERT_AGENCY, []),
            (INSERT_AGENCY, [agency_row("000.00.01.H02")]),
        ]
        rename = (_RENAME, {"code": "000.00.01.H01", "name": "Sở Tư pháp"})
        with counting(db.engine) as executed:
            assert db.write_alone(inserts, rename) == [("000.00.01.H01", "Sở Tư pháp", T0)]
        assert len(executed) == 1 and executed[0].startswith("WITH _w0 AS (INSERT INTO agencies"), executed
        with pytest.raises(RuntimeError, match="boom"), db.transaction() as session:
            session.execute(text("DELETE FROM agencies"))
            raise RuntimeError("boom")
        assert _agencies(db, Agency.code, Agency.name, Agency.level) == [
            ("000.00.01.H01", "Sở Tư pháp", 1),
            ("000.00.01.H02", "Cơ quan 000.00.01.H02", 1),
            ("000.00.01.H03", "Cơ quan 000.00.01.H03", 2),
            ("000.00.01.H04", "Cơ quan 000.00.01.H04", 1),
        ]
        with db.transaction(readonly=True) as session:
            in_id_order = list(session.scalars(select(Agency.code).where(Agency.level > 0).order_by(Agency.id)))
        assert in_id_order.index("000.00.01.H04") < in_id_order.index("000.00.01.H03"), "rows keep their order"
    finally:
        db.dispose()


@pytest.mark.postgres
def test_write_alone_refuses_a_row_as_sqlalchemy_would_and_writes_nothing(pg_url: str) -> None:
    """A refused row is an IntegrityError; neither the other rows nor the returning statement's
    change stay, and the next write goes in."""
    db = Database(pg_url)
    try:
        db.upgrade()
        db.write_alone([(INSERT_AGENCY, [agency_row("000.00.01.H01")])], (select(func.count()).select_from(Agency), {}))
        refused = [(INSERT_AGENCY, [agency_row("000.00.01.H02")]), (INSERT_AGENCY, [agency_row("000.00.01.H01")])]
        with pytest.raises(IntegrityError):
            db.write_alone(refused, (_RENAME, {"code": "000.00.01.H01", "name": "Sở Tư pháp"}))
        db.write_alone([(INSERT_AGENCY, [agency_row("000.00.01.H09")])], (select(func.count()).select_from(Agency), {}))
        assert _agencies(db, Agency.code, Agency.name) == [
            ("000.00.01.H01", "Cơ quan 000.00.01.H01"),
            ("000.00.01.H09", "Cơ quan 000.00.01.H09"),
        ]
    finally:
        db.dispose()


def test_write_alone_needs_postgresql(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        with pytest.raises(ValueError, match="needs PostgreSQL"):
            db.write_alone([(INSERT_AGENCY, [agency_row("000.00.01.H01")])], (select(func.count()), {}))
    finally:
        db.dispose()


# -- writing: SQLite's write transaction straight through the driver ---------------------------------


def test_sqlite_writing_runs_pipelines_in_one_transaction_of_the_drivers(sqlite_url: str) -> None:
    """BEGIN IMMEDIATE, the pipelines' statements (seen by listeners), COMMIT; rows and returned rows
    as in a session's transaction; a block that raises leaves nothing."""
    db = Database(sqlite_url)
    try:
        db.upgrade()
        with counting(db.engine) as executed, db.writing() as transaction:
            rows = db.pipeline(
                transaction,
                [(INSERT_AGENCY, [agency_row("000.00.01.H02"), agency_row("000.00.01.H01", level=2)])],
                [(select(func.count()).select_from(Agency), {})],
            )
            db.pipeline(transaction, [], [(_RENAME, {"code": "000.00.01.H01", "name": "Sở Tư pháp"})])
        assert rows == [[(2,)]]
        assert executed[0] == "BEGIN IMMEDIATE" and len(executed) == 4, executed
        with pytest.raises(RuntimeError, match="boom"), db.writing() as transaction:
            db.pipeline(transaction, [(INSERT_AGENCY, [agency_row("000.00.01.H03")])])
            raise RuntimeError("boom")
        assert _agencies(db, Agency.code, Agency.name, Agency.level, order_by=Agency.id) == [
            ("000.00.01.H02", "Cơ quan 000.00.01.H02", 1),
            ("000.00.01.H01", "Sở Tư pháp", 2),
        ]
    finally:
        db.dispose()


def test_sqlite_writing_refuses_a_row_as_sqlalchemy_would_and_leaves_nothing(sqlite_url: str) -> None:
    """A refused row is an IntegrityError, its siblings go with it, and the next writer gets the lock."""
    db = Database(sqlite_url)
    try:
        db.upgrade()
        with db.writing() as transaction:
            db.pipeline(transaction, [(INSERT_AGENCY, [agency_row("000.00.01.H01")])])
        refused = [(INSERT_AGENCY, [agency_row("000.00.01.H02")]), (INSERT_AGENCY, [agency_row("000.00.01.H01")])]
        with pytest.raises(IntegrityError), db.writing() as transaction:
            db.pipeline(transaction, refused)
        with db.writing() as transaction:
            db.pipeline(transaction, [(INSERT_AGENCY, [agency_row("000.00.01.H09")])])
        assert _agencies(db, Agency.code) == [("000.00.01.H01",), ("000.00.01.H09",)]
    finally:
        db.dispose()


def test_sqlite_writing_on_a_connection_found_lost_is_unavailable(sqlite_url: str) -> None:
    """A statement that finds the connection lost drops it from the pool (the pipeline does so):
    the block's failure is Unavailable, not the rollback's on a closed connection, and the next
    writer gets a new connection."""
    db = Database(sqlite_url)
    try:
        db.upgrade()
        with pytest.raises(Unavailable), db.writing() as transaction:
            db.pipeline(transaction, [(INSERT_AGENCY, [agency_row("000.00.01.H01")])])
            transaction.invalidate()
            raise OperationalError("INSERT …", None, sqlite3.OperationalError("disk I/O error"))
        with db.writing() as transaction:
            db.pipeline(transaction, [(INSERT_AGENCY, [agency_row("000.00.01.H02")])])
        assert _agencies(db, Agency.code) == [("000.00.01.H02",)]
    finally:
        db.dispose()


@pytest.mark.postgres
def test_writing_is_sqlites(pg_url: str) -> None:
    db = Database(pg_url)
    try:
        with pytest.raises(ValueError, match="SQLite's"), db.writing():
            pass
    finally:
        db.dispose()


def _agencies_changed(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(connection.scalar(text("SELECT value FROM relay_state WHERE name = 'agencies_changed'")))


def test_every_write_to_agencies_bumps_the_change_counter(
    database: Database, make_agency: MakeAgency, make_document: MakeDocument
) -> None:
    """Workers reuse addressees they read while this counter stands still (migration 0009), so
    inserts, updates and deletes count, however they are made; other tables' writes do not."""
    before = _agencies_changed(database)
    with database.transaction() as session:
        agency = make_agency(session, "000.00.00.T01")
    inserted = _agencies_changed(database)
    with database.transaction() as session:
        session.get_one(Agency, agency.id).active = False
    updated = _agencies_changed(database)
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM agencies WHERE code = '000.00.00.T01'"))
    deleted = _agencies_changed(database)
    with database.transaction() as session:
        make_document(session, make_agency(session, "000.00.00.T02"))
    assert before < inserted < updated < deleted < _agencies_changed(database)
    with database.transaction() as session:
        make_document(session, session.scalar(select(Agency).where(Agency.code == "000.00.00.T02")))
    assert _agencies_changed(database) == deleted + 1, "a document's insert leaves the counter alone"
