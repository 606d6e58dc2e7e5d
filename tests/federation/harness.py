"""A network of real gateways for the federation tests: national hub, provinces A (``HA``) and B (``HB``).

Every instance is what an operator would run (README "Running a provincial gateway"): its own
data dir and database, its schema made by ``edxml-gateway db upgrade``, its directory and secrets
made with the CLI (``agencies add --home``, ``peers add``, ``credentials issue``; these run through
click in this process, see :meth:`Instance.cli`), then ``edxml-gateway serve`` on a free port and
``edxml-gateway relay`` beside it, each a subprocess in its own process group so that a test can
stop or SIGKILL one of them like a machine losing power.
Agencies talk to their home instance with zeep exactly as their software would; the tests look
into each instance's database only to count what was stored.

This module has a distinctive name (not ``helpers``) because pytest puts every test directory on
``sys.path``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
import zeep
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from support.processes import Process, free_port, gateway_command
from zeep.transports import Transport

from gateway.cli import main as cli_main

NS = "urn:edxml-gateway:soap:v1"
RELAY_NS = "urn:edxml-gateway:relay:v1"
NATIONAL, HA, HB = "national", "HA", "HB"
RELAY_INTERVAL = "0.2"
RELAY_BACKOFF = "1"
"""Short retry backoff so that a hop that was down is retried within the test's patience."""


@dataclass(frozen=True)
class AgencySpec:
    code: str
    name: str
    level: int
    parent: str | None
    home: str


MINISTRY = "000.00.00.G01"
VPCP = "000.00.00.G22"
A_UBND, A_DEPARTMENT, A_DISTRICT = "000.00.00.H41", "000.00.01.H41", "000.00.24.H41"
A_COMMUNE, A_COMMUNE_2 = "000.46.24.H41", "000.47.24.H41"
B_UBND, B_DEPARTMENT, B_COMMUNE = "000.00.00.H14", "000.00.01.H14", "000.46.24.H14"

AGENCIES = (
    AgencySpec(MINISTRY, "Bộ Nội vụ", 1, None, NATIONAL),
    AgencySpec(VPCP, "Văn phòng Chính phủ", 1, None, NATIONAL),
    AgencySpec(A_UBND, "Ủy ban nhân dân tỉnh Nghệ An", 1, None, HA),
    AgencySpec(A_DEPARTMENT, "Sở Thông tin và Truyền thông tỉnh Nghệ An", 2, A_UBND, HA),
    AgencySpec(A_DISTRICT, "Ủy ban nhân dân huyện Nghi Lộc", 2, A_UBND, HA),
    AgencySpec(A_COMMUNE, "Ủy ban nhân dân xã Nghi Phong", 3, A_DISTRICT, HA),
    AgencySpec(A_COMMUNE_2, "Ủy ban nhân dân xã Nghi Thái", 3, A_DISTRICT, HA),
    AgencySpec(B_UBND, "Ủy ban nhân dân tỉnh Cao Bằng", 1, None, HB),
    AgencySpec(B_DEPARTMENT, "Sở Thông tin và Truyền thông tỉnh Cao Bằng", 2, B_UBND, HB),
    AgencySpec(B_COMMUNE, "Ủy ban nhân dân xã Đức Long", 3, B_UBND, HB),
)
HOME = {spec.code: spec.home for spec in AGENCIES}
NAMES = {spec.code: spec.name for spec in AGENCIES}

T = TypeVar("T")
_CLI_LOCK = threading.Lock()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ProcessExited(AssertionError):
    """A gateway process died while the test waited for it: no point waiting any longer."""


def wait_until(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Call ``probe`` until it returns something truthy; AssertionError naming ``what`` after ``timeout``.

    A probe that raises counts as "not yet" until the deadline, then its error is shown.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except ProcessExited:
            raise
        except Exception as exc:  # reported below if it never succeeds
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last probe: {last!r}")
        time.sleep(interval)


@dataclass
class Instance:
    """One gateway of the network: its settings, its CLI, its two processes and its agencies' clients."""

    instance_id: str
    role: str
    root: Path
    database_url: str
    port: int = field(default_factory=free_port)
    upstream: Instance | None = None
    upstream_secret: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    serve_options: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    serve: Process | None = None
    relay: Process | None = None
    _wsdl_client: zeep.Client | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def soap_url(self) -> str:
        return f"{self.base_url}/soap"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def env(self) -> dict[str, str]:
        """The environment an operator would give this instance's processes (nothing inherited from ours)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "EDXML_"))}
        env.update(
            GATEWAY_DATA_DIR=str(self.data_dir),
            GATEWAY_DATABASE_URL=self.database_url,
            GATEWAY_INSTANCE_ID=self.instance_id,
            GATEWAY_ROLE=self.role,
            GATEWAY_RELAY_INTERVAL=RELAY_INTERVAL,
            GATEWAY_RELAY_BACKOFF_SECONDS=RELAY_BACKOFF,
        )
        if self.upstream is not None:
            env["GATEWAY_UPSTREAM_URL"] = self.upstream.base_url
            env["GATEWAY_UPSTREAM_SECRET"] = self.upstream_secret
        env.update(self.extra_env)
        return env

    def cli(self, *args: str) -> str:
        """``edxml-gateway ARGS`` for this instance; its stdout, or AssertionError with everything it said.

        The administration commands run in this process through click (the same command objects
        the console script runs, with this instance's environment): thirty interpreter start-ups
        per network cost a minute on a loaded two-core machine. serve and relay are real processes.
        """
        with _CLI_LOCK:  # CliRunner swaps os.environ and sys.stdout for the duration of a call
            result = CliRunner().invoke(cli_main, list(args), env=self.env(), catch_exceptions=True)
        if result.exit_code != 0:
            raise AssertionError(
                f"[{self.instance_id}] edxml-gateway {' '.join(args)} exited {result.exit_code}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
            )
        return result.stdout

    def issue_secret(self, *args: str) -> str:
        """The secret a ``credentials issue`` / ``peers add`` printed: the last line of its stdout."""
        lines = [line.strip() for line in self.cli(*args).splitlines() if line.strip()]
        assert lines, f"[{self.instance_id}] {' '.join(args)} printed no secret"
        return lines[-1]

    # -- processes ---------------------------------------------------------------------------------

    def start_serve(self, timeout: float = 60, wait: bool = True) -> None:
        self.serve = Process(
            f"{self.instance_id} serve",
            [*gateway_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.serve_options],
            self.env(),
            self.root / "serve.log",
            self.root,
        ).start()
        if wait:
            self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60) -> None:
        assert self.serve is not None
        wait_until(self._healthy, timeout, f"{self.instance_id} /health")

    def _healthy(self) -> bool:
        assert self.serve is not None
        if not self.serve.running:
            raise ProcessExited(f"{self.instance_id} serve exited:\n{self.serve.tail()}")
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{self.base_url}/health", timeout=2).status_code == 200
        return False

    def start_relay(self) -> None:
        self.relay = Process(
            f"{self.instance_id} relay", [*gateway_command(), "relay"], self.env(), self.root / "relay.log", self.root
        ).start()

    def processes(self) -> list[Process]:
        return [p for p in (self.serve, self.relay) if p is not None]

    def stop(self) -> None:
        for process in self.processes():
            process.stop()

    def kill(self) -> None:
        """SIGKILL serve and relay (each its whole process group): the machine loses power."""
        for process in self.processes():
            process.kill()

    def restart(self) -> None:
        """``serve`` (waiting for /health) and ``relay`` again, on the same data dir, database and port."""
        self.start_serve()
        self.start_relay()

    # -- clients -----------------------------------------------------------------------------------

    def client(self, code: str, secret: str | None = None) -> zeep.Client:
        """A zeep client of this instance's agency WSDL, authenticated as ``code`` (AuthHeader)."""
        client = zeep.Client(
            f"{self.soap_url}?wsdl",
            transport=Transport(timeout=60, operation_timeout=180),
            settings=zeep.Settings(xml_huge_tree=True),
        )
        header = client.get_element(f"{{{NS}}}AuthHeader")(agencyCode=code, secret=secret or self.secrets[code])
        client.set_default_soapheaders([header])
        return client

    def relay_client(self, instance_id: str, secret: str) -> zeep.Client:
        """A zeep client of this instance's ``/relay`` endpoint speaking as peer ``instance_id``."""
        client = zeep.Client(
            f"{self.base_url}/relay?wsdl",
            transport=Transport(timeout=60, operation_timeout=180),
            settings=zeep.Settings(xml_huge_tree=True),
        )
        header = client.get_element(f"{{{RELAY_NS}}}PeerHeader")(instanceId=instance_id, secret=secret)
        client.set_default_soapheaders([header])
        return client

    def rows(self, sql: str, **params: object) -> list[Any]:
        """Every row a query returns from this instance's database (reading only, as :meth:`scalar`)."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(text(sql), params).all())
        finally:
            engine.dispose()

    def scalar(self, sql: str, **params: object) -> Any:
        """One value from this instance's database (counting what was stored; never writing)."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return connection.execute(text(sql), params).scalar()
        finally:
            engine.dispose()


@dataclass
class Network:
    """The three instances, built and started by :func:`start_network`."""

    instances: dict[str, Instance]

    def __getitem__(self, instance_id: str) -> Instance:
        return self.instances[instance_id]

    @property
    def national(self) -> Instance:
        return self.instances[NATIONAL]

    def home_of(self, code: str) -> Instance:
        return self.instances[HOME[code]]

    def client(self, code: str) -> zeep.Client:
        """``code``'s client at its home instance (the only place it has credentials)."""
        return self.home_of(code).client(code)

    def processes(self) -> Iterator[Process]:
        for instance in self.instances.values():
            yield from instance.processes()

    def logs(self) -> str:
        parts = []
        for instance in self.instances.values():
            for process in instance.processes():
                parts.append(f"---- {process.label} ({process.log}) ----\n{process.tail()}")
            for name in ("serve.log", "relay.log"):
                log = instance.root / name
                if log.exists() and not any(p.log == log for p in instance.processes()):
                    parts.append(f"---- {instance.instance_id} {name} ----\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for instance in self.instances.values():
            instance.stop()

    def wait_for_directory(self, timeout: float = 90) -> None:
        """Every instance's getAgencies lists every agency of the network with its home instance
        (directory sync has run): an agency's software sees the whole country at any tier."""
        for instance in self.instances.values():
            own = next(code for code, home in HOME.items() if home == instance.instance_id)
            client = instance.client(own)

            def listed(client: zeep.Client = client) -> dict[str, str] | None:
                homes = {a.code: a.homeInstance for a in client.service.getAgencies(includeHomeInstance=True) or []}
                return homes if HOME.items() <= homes.items() else None

            wait_until(listed, timeout, f"{instance.instance_id}'s getAgencies to list with their homes {HOME}")


def _prepare(instance: Instance) -> None:
    """Schema, own agencies (``--home`` this instance) and one secret per agency, with the CLI."""
    instance.data_dir.mkdir(parents=True, exist_ok=True)
    instance.cli("db", "upgrade")
    for spec in AGENCIES:
        if spec.home != instance.instance_id:
            continue
        parent = ["--parent", spec.parent] if spec.parent else []
        instance.cli("agencies", "add", spec.code, spec.name, "--level", str(spec.level), *parent, "--home", spec.home)
        instance.secrets[spec.code] = instance.issue_secret("credentials", "issue", spec.code)


def build_network(
    root: Path,
    database_urls: dict[str, str],
    extra_env: dict[str, str] | None = None,
    serve_options: list[str] | None = None,
) -> Network:
    """Data dirs, schemas, directories, peers and credentials for the three instances (nothing started).

    ``serve_options`` go to every ``serve`` (e.g. ``--workers 2 --production`` for gunicorn).
    """
    national = Instance(NATIONAL, "national", root / NATIONAL, database_urls[NATIONAL])
    instances = {NATIONAL: national}
    for province in (HA, HB):
        instances[province] = Instance(
            province, "provincial", root / province, database_urls[province], upstream=national
        )
    for instance in instances.values():
        instance.extra_env.update(extra_env or {})
        instance.serve_options = list(serve_options or [])
        _prepare(instance)
    for province in (HA, HB):
        instances[province].upstream_secret = national.issue_secret(
            "peers", "add", province, "--name", f"Province {province}"
        )
    return Network(instances)


def start_network(network: Network, relays: bool = True) -> None:
    """``serve`` for every instance, then (once all answer /health) every relay."""
    for instance in network.instances.values():
        instance.start_serve(wait=False)
    for instance in network.instances.values():
        instance.wait_healthy()
    if relays:
        for instance in network.instances.values():
            instance.start_relay()


# -- agency helpers ------------------------------------------------------------------------------


def items_of(client: zeep.Client, max_items: int = 100) -> list[Any]:
    return list(client.service.getPendingDocuments(maxItems=max_items) or [])


class Inbox:
    """Everything an agency's pending list has shown so far, by item id.

    getPendingDocuments leases what it returns (hidden from the next call for the lease time), so
    a test that polls must keep what each call returned rather than expect to see it again.
    """

    def __init__(self, client: zeep.Client) -> None:
        self.client = client
        self.items: dict[str, Any] = {}

    def poll(self) -> list[Any]:
        new = [item for item in items_of(self.client) if item.itemId not in self.items]
        self.items.update((item.itemId, item) for item in new)
        return new

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float, what: str) -> list[Any]:
        def probe() -> list[Any] | None:
            self.poll()
            values = list(self.items.values())
            return values if predicate(values) else None

        return wait_until(probe, timeout, what)

    def documents(self) -> list[Any]:
        return [item for item in self.items.values() if item.kind == "document"]

    def statuses(self) -> list[Any]:
        return [item for item in self.items.values() if item.kind == "status"]


def history_by_recipient(client: zeep.Client, document_id: str) -> dict[str, list[str]]:
    per_recipient: dict[str, list[str]] = {}
    for entry in client.service.getStatusHistory(documentId=document_id) or []:
        per_recipient.setdefault(entry.recipientCode, []).append(entry.statusCode)
    return per_recipient


def fetch_and_ack(client: zeep.Client, items: Iterable[Any]) -> list[bytes]:
    """Fetch every item (checking the declared sha256) and acknowledge it; the files, in order."""
    files = []
    for item in items:
        fetched = client.service.getDocument(itemId=item.itemId)
        assert fetched.sha256 == sha256(fetched.edxml), f"item {item.itemId}: declared sha256 differs from the bytes"
        assert client.service.confirmReceived(itemId=item.itemId) is True
        files.append(fetched.edxml)
    return files
