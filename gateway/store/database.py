"""One place that knows how to talk to the database: engine setup, transactions, migrations.

SQLite is the zero-setup default and PostgreSQL the multi-node option; callers see the same
:class:`Database` either way. Every unit of work runs in :meth:`Database.transaction`, which commits
or rolls back as a whole and turns "cannot reach or lock the database" into
:class:`gateway.errors.Unavailable`, so the SOAP layer can tell a clerk to retry.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, exc, make_url, text
from sqlalchemy import insert as insert_into
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Insert, Select, TextClause, Update

from gateway.errors import Unavailable
from gateway.extras import require
from gateway.store import blocking

log = logging.getLogger(__name__)

UNAVAILABLE_MESSAGE = "The gateway's database is busy or unreachable; nothing was stored. Please retry."
SQLITE_BUSY_SECONDS = 5
"""How long an SQLite writer waits for the write lock (busy_timeout, and the in-process writer turn)."""
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Key for pg_advisory_xact_lock while migrating, so several workers starting at once upgrade in turn.
_MIGRATION_LOCK_KEY = 0x6564_786D_6C00_0001

# Failures of the connection or of lock acquisition, as opposed to a refused statement
# (IntegrityError and friends), which callers must see unchanged.
_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    exc.DisconnectionError,
)


class Database:
    """An engine plus a session factory for one database URL."""

    def __init__(self, url: str | URL, *, echo: bool = False, pool_size: int = 5, max_overflow: int = 10) -> None:
        self.url: URL = make_url(url)
        if self.url.get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(self.url, echo=echo)
        else:
            if self.url.get_driver_name() == "psycopg":
                require("psycopg", "postgres", "A PostgreSQL database")
            # No pool_pre_ping: it costs a round trip per transaction. A connection the server dropped
            # fails its one request with Unavailable (the client retries), and SQLAlchemy then
            # invalidates the whole pool, so the next request reconnects.
            self.engine = create_engine(
                self.url,
                echo=echo,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_timeout=10,
                pool_recycle=1800,
            )
        self._readonly_options: dict[str, Any] = (
            {_READONLY: True} if self.dialect_name == "sqlite" else {"isolation_level": "AUTOCOMMIT"}
        )
        # expire_on_commit=False: rows returned from a transaction stay readable after it commits.
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite writers of one process take turns on this lock before BEGIN IMMEDIATE (docs/storage.md §1).
        self._sqlite_writer: threading.RLock | None = threading.RLock() if self.dialect_name == "sqlite" else None
        self._reader = self.engine.execution_options(
            **({_READONLY: _AUTOCOMMIT} if self.dialect_name == "sqlite" else {"isolation_level": "AUTOCOMMIT"})
        )
        self._driver_statements: dict[tuple[int, tuple[str, ...], int, int], tuple[_Compilable, _DriverStatement]] = {}
        """Statements compiled for the driver, by object, columns, number of rows and WITH part."""
        dbapi = self.engine.dialect.loaded_dbapi
        self._driver_unavailable: tuple[type[BaseException], ...] = (dbapi.OperationalError, dbapi.InterfaceError)
        self._driver_error: type[Exception] = dbapi.Error
        self._lost: tuple[type[BaseException], ...] = (*_UNAVAILABLE_ERRORS, *self._driver_unavailable)
        """What says the database is busy or unreachable, from SQLAlchemy or straight from the driver."""

    @property
    def dialect_name(self) -> str:
        """``sqlite`` or ``postgresql``: for the few places where behaviour must differ."""
        return self.engine.dialect.name

    @contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[Session]:
        """Yield a session inside one transaction: commit on success, roll back on any exception.

        ``readonly=True`` promises the transaction writes nothing: on SQLite it then starts
        deferred and reads its WAL snapshot without taking the write lock, so readers never queue
        behind writers; on PostgreSQL its statements run in autocommit, saving the BEGIN and
        COMMIT round trips (each read sees committed data; callers that need one snapshot for
        several reads must not ask for readonly). Connection failures, lock timeouts and pool exhaustion become
        :class:`Unavailable` (nothing was stored); all other exceptions propagate unchanged after
        the rollback. Do not nest two transactions in one thread: on SQLite the inner one would
        wait for the outer one's write lock. A connection that held its worker (an audit append on
        PostgreSQL, gateway/store/blocking.py) stops holding it once the COMMIT or ROLLBACK is done.
        """
        try:
            with self._writer_turn(readonly), self._sessions() as session:
                try:
                    with session.begin():
                        if readonly:
                            session.connection(execution_options=self._readonly_options)
                        yield session
                finally:
                    blocking.release(session)
        except _UNAVAILABLE_ERRORS as error:
            raise _unavailable(error) from error

    @contextmanager
    def _writer_turn(self, readonly: bool) -> Iterator[None]:
        """On SQLite, queue this process's writers on a lock instead of in SQLite's busy handler.

        The busy handler polls with sleeps of up to 100 ms, so under steady contention a waiting
        thread can lose every round and reach the busy timeout while others commit (seen with six
        threads on a loaded machine). Waiting threads of one process block on this lock instead
        and the next one starts as soon as the previous commits; only other processes (gunicorn
        workers) still meet in the busy handler. Under gevent the lock is cooperative, so a
        greenlet waiting its turn lets the one holding the write lock finish.
        """
        lock = None if readonly else self._sqlite_writer
        if lock is None:
            yield
            return
        if not lock.acquire(timeout=SQLITE_BUSY_SECONDS):
            log.warning("database unavailable: no turn for an SQLite writer within %s s", SQLITE_BUSY_SECONDS)
            raise Unavailable(UNAVAILABLE_MESSAGE)
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """Yield a connection whose statements each run on their own, in autocommit: for lone reads.

        Some calls start with SELECTs that need neither a snapshot shared between them nor the ORM
        (a poll's availability check, a send's duplicate and addressee checks; authentication uses
        :meth:`read_rows`). Without a session and without BEGIN and COMMIT they cost about half as
        much CPU as a read-only :meth:`transaction`, and no round trip more on either backend.
        Failures become :class:`Unavailable` as in :meth:`transaction`.
        """
        try:
            with self._reader.connect() as connection:
                yield connection
        except _UNAVAILABLE_ERRORS as error:
            raise _unavailable(error) from error

    def read_rows(self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run one SELECT on its own, in autocommit, straight through the database driver.

        For the one statement every call runs (authentication): SQLAlchemy's execution path, pool
        events and the switch to autocommit cost about 200 us of CPU per call on PostgreSQL, twice
        the driver's own work, and an empty poll is little else (issue 13; docs/performance.md).
        The statement is compiled once per object (keep it in a module constant). Parameters go
        through their types' bind processors and values read through their result processors, as
        SQLAlchemy would convert them (SQLite's dates and booleans included); a type whose result
        processor needs the driver's type code (PostgreSQL's Numeric) is not supported. An
        expanding (IN) parameter takes a list; its SQL is expanded per call, as SQLAlchemy does.
        The engine's ``before_cursor_execute`` listeners still see the statement (with no
        Connection or context), so statement counts stay true. Connection failures become
        :class:`Unavailable`, as in :meth:`transaction`.
        """
        prepared = self._driver_statement(statement)
        sql, values = prepared.bound(params)
        return self._run_alone(prepared, sql, values)

    def write_alone(
        self,
        inserts: Sequence[tuple[Insert, Sequence[Mapping[str, Any]]]],
        then: tuple[_Compilable, Mapping[str, Any]],
    ) -> list[tuple[Any, ...]]:
        """PostgreSQL: plain INSERTs and one statement whose rows are returned, as one statement on its own.

        Each INSERT becomes a part of a ``WITH`` around ``then`` (its rows in one VALUES list, in
        their order), run in autocommit as :meth:`read_rows` runs a SELECT: the server commits when
        the statement ends, so all of it is written or none, in one round trip with no BEGIN, COMMIT
        or pipeline. A send writes its rows and its audit entry this way
        (:func:`gateway.store.audit.write_alone`): against the same writes in :meth:`transaction`
        with :meth:`pipeline` it cost the gateway about 0.4 times the CPU and the server about 0.7
        times (docs/performance.md, "A send's writes as one statement").
        Foreign keys are checked when the statement ends, so a row may refer to one an earlier
        INSERT writes; the parts run on one snapshot, so none reads what another writes. The INSERTs'
        rules are :meth:`pipeline`'s; a refused statement raises what SQLAlchemy would raise
        (IntegrityError…), and a lost connection or a lock wait that timed out gives
        :class:`Unavailable`; either way nothing was written.
        """
        if self.dialect_name != "postgresql":
            raise ValueError("write_alone needs PostgreSQL; on SQLite write in a transaction")
        parts: list[str] = []
        values: dict[str, Any] = {}
        for statement, rows in inserts:
            if not rows:
                continue
            part = self._driver_statement(statement, tuple(rows[0]), rows=len(rows), part=len(parts))
            prefix = f"_w{len(parts)}_"
            given = {f"{prefix}{i}_{name}": value for i, row in enumerate(rows) for name, value in row.items()}
            values.update(_named(part.bound(given)[1]))
            parts.append(f"_w{len(parts)} AS ({part.sql})")
        returning = self._driver_statement(then[0])
        then_sql, then_values = returning.bound(then[1])
        named = _named(then_values)
        if values.keys() & named.keys():
            raise ValueError("a parameter of the returning statement is named like an INSERT's (_w0_…)")
        sql = f"WITH {', '.join(parts)} {then_sql}" if parts else then_sql
        return self._run_alone(returning, sql, values | named)

    def _run_alone(self, prepared: _DriverStatement, sql: str, values: Any) -> list[tuple[Any, ...]]:
        """Run ``sql`` on a pooled connection in autocommit, straight through the driver; return ``prepared``'s rows."""
        pooled = self._pooled()
        try:
            connection: Any = pooled.driver_connection
            if prepared.switch_autocommit:
                connection.autocommit = True
            with closing(connection.cursor()) as cursor:
                self._execute(cursor, sql, values)
                rows = prepared.converted(cursor.fetchall())
            if prepared.switch_autocommit:
                connection.autocommit = False
        except self._driver_unavailable as error:
            pooled.invalidate()
            raise _unavailable(error) from error
        except self._driver_error as error:
            # Refused by the database (a DocumentId already used, an unknown column): the statement's
            # own transaction is over and the connection is sound, so it goes back to the pool in
            # transaction mode instead of costing the next caller a new server process.
            refused = self._refused(sql, error)
            if prepared.switch_autocommit:
                connection.autocommit = False
            raise refused from error
        except BaseException:
            pooled.invalidate()
            raise
        finally:
            pooled.close()
        return rows

    @contextmanager
    def writing(self) -> Iterator[DriverTransaction]:
        """SQLite: one write transaction straight through the driver, for writes that need no ORM.

        The writer's turn, ``BEGIN IMMEDIATE`` on a pooled connection, then what the block runs with
        :meth:`pipeline` (pass it the yielded transaction instead of a session), then COMMIT, or
        ROLLBACK when the block raises. A send writes its rows and audit entry this way
        (:func:`gateway.store.audit.write_alone`): without the session, its transaction and the
        engine's events around them it costs the worker less CPU (docs/performance.md, "SQLite
        sends through the driver"). Failures are as in :meth:`transaction`: a busy or lost
        database gives :class:`Unavailable`, a refused statement what SQLAlchemy would raise; either
        way nothing was written.
        """
        if self.dialect_name != "sqlite":
            raise ValueError("writing is SQLite's; on PostgreSQL use write_alone or a transaction")
        with self._writer_turn(readonly=False):
            pooled = self._pooled()
            driver: Any = pooled.driver_connection
            try:
                with closing(driver.cursor()) as cursor:
                    self._execute(cursor, "BEGIN IMMEDIATE")
                try:
                    yield DriverTransaction(driver, None, pooled.invalidate)
                except BaseException:
                    if pooled.is_valid:  # a connection found lost is closed, and its transaction with it
                        driver.rollback()
                    raise
                driver.commit()
            except self._lost as error:
                raise _unavailable(error) from error
            except self._driver_error as error:
                raise self._refused("COMMIT", error) from error
            finally:
                pooled.close()

    def _pooled(self) -> Any:
        """A connection from the engine's pool, bypassing SQLAlchemy's Connection; Unavailable if none."""
        try:
            return self.engine.raw_connection()
        except self._lost as error:
            raise _unavailable(error) from error

    def _execute(self, cursor: Any, sql: str, values: Any = ()) -> None:
        """One statement on a driver's cursor, seen by the engine's ``before_cursor_execute`` listeners."""
        self.engine.dispatch.before_cursor_execute(None, cursor, sql, values, None, False)
        cursor.execute(sql, values)

    def _refused(self, sql: str, error: Exception) -> exc.StatementError:
        """A driver's refusal as SQLAlchemy would raise it (IntegrityError…), for callers that catch those."""
        return exc.DBAPIError.instance(sql, None, error, self._driver_error, dialect=self.engine.dialect)

    def pipeline(
        self,
        session: Session | DriverTransaction,
        inserts: Sequence[tuple[Insert, Sequence[Mapping[str, Any]]]] = (),
        then: Sequence[tuple[_Compilable, Mapping[str, Any]]] = (),
    ) -> list[list[tuple[Any, ...]]]:
        """Run plain INSERTs, then statements whose rows are returned, in ``session``'s transaction
        (or in a :meth:`writing` transaction's).

        Everything goes straight through the database driver, on the session's own connection, and
        on PostgreSQL in one psycopg pipeline, with the transaction's BEGIN when it is the first:
        one round trip in all. Through the session each statement cost about 100 us more CPU, and on
        PostgreSQL each is a round trip of its own, during which the worker is descheduled while the
        server runs (docs/performance.md). A status report writes its rows and its audit entry this
        way (:func:`audit.insert_then_append`), and a fetch leases its item and records the copy's
        arrival (a send that writes nothing else uses :meth:`write_alone`). On SQLite they run one
        after another after the session's BEGIN IMMEDIATE.
        Returns the rows of each ``then`` statement, in order, converted as SQLAlchemy would.

        Each statement is compiled once per object and set of columns (keep it in a module
        constant); all rows of one INSERT must name the same columns, and a column left out must
        not need a Python-side default (refused). Values go through their types' bind processors. A
        refused statement raises what SQLAlchemy would raise (IntegrityError…), once the pipeline
        is synchronised, and nothing after it runs; a lost connection gives :class:`Unavailable`
        through :meth:`transaction`. ``before_cursor_execute`` listeners see every statement.
        """
        if isinstance(session, Session):
            bound = session.connection()
            session = DriverTransaction(bound.connection.driver_connection, bound, bound.invalidate)
        driver, connection = session.driver, session.connection
        batches: list[tuple[str, list[Any], _DriverStatement | None]] = []
        for insert, rows in inserts:
            if rows:
                compiled = self._driver_statement(insert, tuple(rows[0]))
                batches.append((compiled.sql, [compiled.bound(row)[1] for row in rows], None))
        for statement, params in then:
            returning = self._driver_statement(statement)
            then_sql, then_values = returning.bound(params)
            batches.append((then_sql, [then_values], returning))
        postgresql = self.dialect_name == "postgresql"
        pipeline = driver.pipeline() if postgresql else nullcontext()
        cursors: list[tuple[Any, _DriverStatement]] = []
        try:
            with ExitStack() as open_cursors:
                cursor = open_cursors.enter_context(closing(driver.cursor()))
                with pipeline:
                    for sql, values, returns in batches:
                        if returns is not None:
                            # A cursor of its own: a pipelined cursor keeps only its last statement's rows.
                            cursor = open_cursors.enter_context(closing(driver.cursor()))
                            cursors.append((cursor, returns))
                        many = len(values) > 1
                        self.engine.dispatch.before_cursor_execute(
                            connection, cursor, sql, values if many else values[0], None, many
                        )
                        if many:
                            cursor.executemany(sql, values)
                        else:
                            cursor.execute(sql, values[0])
                results = [returns.converted(cursor.fetchall()) for cursor, returns in cursors]
            return results
        except self._driver_error as error:
            if isinstance(error, self._driver_unavailable):
                session.invalidate()
            raise self._refused("; ".join(sql for sql, _, _ in batches), error) from error

    def _driver_statement(
        self, statement: _Compilable, columns: tuple[str, ...] = (), *, rows: int = 0, part: int = 0
    ) -> _DriverStatement:
        """``statement`` compiled for the driver, once per object and shape.

        With ``rows``: that many rows of the INSERT ``statement`` as one multi-row VALUES, their
        parameters named for :meth:`write_alone`'s ``WITH`` part ``part`` (``_w{part}_{row}_{column}``).
        One INSERT per table keeps the rows in their order (a table's ids follow it, as the recipients'
        order is the document's); separate parts would not, since PostgreSQL runs a WITH's
        data-modifying parts in an order of its own.
        """
        key = (id(statement), columns, rows, part)
        cached = self._driver_statements.get(key)
        if cached is None or cached[0] is not statement:
            compilable: _Compilable = statement
            if rows:
                if not isinstance(statement, Insert):
                    raise TypeError("only an INSERT's rows can be written as one multi-row VALUES")
                table = statement.table
                values = [
                    {name: bindparam(f"_w{part}_{i}_{name}", type_=table.c[name].type) for name in columns}
                    for i in range(rows)
                ]
                compilable, columns = insert_into(table).values(values), ()
            # The statement is kept alongside, so its id cannot be reused by another object.
            cached = (statement, _DriverStatement.compile(compilable, self.engine.dialect, columns))
            self._driver_statements[key] = cached
        return cached[1]

    def upgrade(self, revision: str = "head") -> None:
        """Run the alembic migrations up to ``revision``, in one transaction."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.render_as_string(hide_password=False))
        try:
            with self.engine.begin() as connection:
                if self.dialect_name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        except _UNAVAILABLE_ERRORS as error:
            raise Unavailable(UNAVAILABLE_MESSAGE) from error

    def vacuum_settings_off(self) -> list[str]:
        """The PostgreSQL settings, of ``autovacuum`` and ``track_counts``, that are off (none on SQLite).

        With either off the server never vacuums or analyses the gateway's tables by itself. Every
        queue item is updated three times (leased, fetched, acknowledged), so its table and indexes
        then fill with dead row versions, and the planner keeps the picture it had of the tables
        when they were small: receiving slows down day after day (docs/storage.md §2). ``serve``
        warns about it at start; SQLite reuses freed pages itself and gathers no statistics unless
        told to, so it has nothing to report.
        """
        if self.dialect_name != "postgresql":
            return []
        with self.reading() as connection:
            return list(connection.scalars(_VACUUM_SETTINGS_OFF))

    def dispose(self) -> None:
        """Close every pooled connection (at shutdown, and in a child process after fork)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"


_VACUUM_SETTINGS_OFF = text(
    "SELECT name FROM pg_settings WHERE name IN ('autovacuum', 'track_counts') AND setting = 'off' ORDER BY name"
)

_Compilable = Select[*tuple[Any, ...]] | Insert | Update | TextClause


def _unavailable(error: BaseException) -> Unavailable:
    """Log why the database could not be used; the error a clerk sees says nothing was stored, retry."""
    log.warning("database unavailable: %s", error)
    return Unavailable(UNAVAILABLE_MESSAGE)


def _named(values: dict[str, Any] | tuple[Any, ...]) -> dict[str, Any]:
    """Parameters compiled for psycopg, which takes them by name (SQLite's, by position, are refused)."""
    if not isinstance(values, dict):
        raise TypeError("write_alone needs named parameters (PostgreSQL's driver)")
    return values


@dataclass(frozen=True)
class DriverTransaction:
    """A transaction on a driver connection, for :meth:`Database.pipeline` (see :meth:`Database.writing`)."""

    driver: Any
    connection: Connection | None
    """SQLAlchemy's Connection around it, when there is one (listeners receive it)."""
    invalidate: Callable[[], None]
    """Drops the connection from the pool once it is found lost."""


@dataclass(frozen=True)
class _DriverStatement:
    """A SELECT or INSERT compiled for one dialect, with what turns call parameters into the driver's."""

    sql: str
    compiled: Any
    positions: tuple[str, ...] | None
    """Parameter names in order, for drivers that take them by position (SQLite's ``?``)."""
    processors: dict[str, Callable[[Any], Any]]
    switch_autocommit: bool
    """PostgreSQL: pooled connections are in a transaction mode; the read runs in autocommit."""
    expanding: bool
    """An IN list is among the parameters: the SQL depends on its length and is expanded per call."""
    results: tuple[Callable[[Any], Any] | None, ...]
    """Result processors of a SELECT's columns or of what an INSERT or UPDATE returns, one per column
    (None where the driver's value is kept)."""

    @classmethod
    def compile(cls, statement: _Compilable, dialect: Dialect, columns: tuple[str, ...] = ()) -> _DriverStatement:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns) if columns else None)
        if getattr(compiled, "insert_prefetch", None):
            missing = ", ".join(column.key for column in compiled.insert_prefetch)
            raise ValueError(f"give these columns a value; their defaults are applied by SQLAlchemy: {missing}")
        processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        positions = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        expanding = any(bind.expanding for bind in compiled.binds.values())
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in getattr(statement, "exported_columns", ())
        )
        return cls(str(compiled), compiled, positions, processors, dialect.name == "postgresql", expanding, results)

    def converted(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """The driver's rows with each value through its column's result processor."""
        if not any(self.results):
            return [tuple(row) for row in rows]
        return [
            tuple(
                value if convert is None else convert(value) for convert, value in zip(self.results, row, strict=True)
            )
            for row in rows
        ]

    def bound(self, params: Mapping[str, Any]) -> tuple[str, dict[str, Any] | tuple[Any, ...]]:
        """The SQL to run and the driver's parameters for it."""
        if self.expanding:
            state = self.compiled.construct_expanded_state(dict(params))
            return state.statement, self._processed(
                dict(state.parameters), state.processors, state.positiontup if self.positions else None
            )
        given: dict[str, Any] = self.compiled.construct_params(dict(params))
        return self.sql, self._processed(given, self.processors, self.positions)

    @staticmethod
    def _processed(
        given: dict[str, Any], processors: Mapping[str, Callable[[Any], Any]], positions: Sequence[str] | None
    ) -> dict[str, Any] | tuple[Any, ...]:
        for name, processor in processors.items():
            if name in given:
                given[name] = processor(given[name])
        if positions is not None:
            return tuple(given[name] for name in positions)
        return given


_READONLY = "gateway_readonly"
"""Execution option marking a transaction that only reads (see Database.transaction)."""
_AUTOCOMMIT = "autocommit"
"""Value of :data:`_READONLY` for :meth:`Database.reading`: no BEGIN at all, each statement on its own."""


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    """An SQLite engine whose transactions all start with ``BEGIN IMMEDIATE``.

    In WAL mode a deferred transaction that reads and then writes fails at once with "database is
    locked" when another writer got in between, and the busy handler does not retry it
    (docs/storage.md §1). Taking the write lock at BEGIN makes the busy timeout apply and serialises writers. Only
    pysqlite's own transaction handling is disabled so SQLAlchemy's ``begin`` hook is the one place
    that starts transactions (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional
    DDL").
    """
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 5})
    wal_checked = False

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        nonlocal wal_checked
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not wal_checked and not in_memory:
                # journal_mode is persistent in the file: set it once per engine, not per connection.
                mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    cursor.execute("PRAGMA journal_mode=WAL")
                wal_checked = True
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        readonly = connection.get_execution_options().get(_READONLY, False)
        if readonly != _AUTOCOMMIT:
            connection.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")

    return engine


SERVE_LOCK_SUFFIX = ".serve-lock"


class SingleNodeOnly(RuntimeError):
    """A second gateway process tried to serve an SQLite store another one is serving."""


def claim_single_node(url: str | URL) -> int | None:
    """Make this process the only one serving the SQLite store at ``url``; a no-op for other backends.

    Several nodes are several machines (or independent processes) sharing one store. SQLite's
    locking is only reliable between processes of one machine on a local filesystem, and its writers
    queue on one database-wide lock, so it is a one-node store: scale it with gunicorn workers (they
    share this lock) and move to PostgreSQL for several nodes. The serving process takes an
    exclusive ``fcntl.flock`` on ``<database>.serve-lock`` and keeps the returned descriptor open
    while it serves (:func:`single_node`); gunicorn workers forked meanwhile share the descriptor,
    and the kernel drops the lock when every process holding it has exited, crashes included.
    Raises :class:`SingleNodeOnly` when another process holds it. In-memory databases are private
    to one process and need no lock.
    """
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    path = Path(database).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + SERVE_LOCK_SUFFIX)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SingleNodeOnly(
            f"another gateway process is already serving this SQLite store (it holds {lock_path}). SQLite supports "
            "one node; for several nodes use one PostgreSQL database (GATEWAY_DATABASE_URL=postgresql+psycopg://...) "
            "and one shared GATEWAY_BLOB_DIR."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextmanager
def single_node(url: str | URL) -> Iterator[None]:
    """Hold :func:`claim_single_node`'s lock while the block serves; released when it ends."""
    fd = claim_single_node(url)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)
