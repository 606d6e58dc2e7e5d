"""A national-scale day on one machine: thousands of agencies polling every 30 s while documents flow.

The question this answers: how many agencies can one 2-core machine serve when each one's
software polls ``getPendingDocuments`` every 30 seconds (the usual setting of the document-
management systems), with p99 of an empty poll under 100 ms, while documents keep flowing?

1. A directory of at least 10,000 agencies is generated below the national one (Văn phòng Chính
   phủ, ``000.00.00.G22``), in the three levels the exchange serves: ministries and provinces
   (``000.00.00.G01``, ``000.00.00.H41``), their departments and districts (``000.00.05.H41``,
   ``000.00.21.H41``) and the districts' communes (``000.07.21.H41``): QCVN 102's
   ``DDD.DD.DD.XDD`` shape, each child keeping its parent's right-hand groups. Every agency gets
   a credential. (Generated codes are marked test codes: they are not official.)
2. The gateway runs as deployed (``tools/bench_app.py``: gunicorn, sync workers, two per core) on
   SQLite or a fresh PostgreSQL database.
3. One client process drives it with asyncio over raw HTTP and pre-built envelopes (the client
   must stay cheap): every agency polls once per period, the population spread evenly over it;
   documents are sent at a steady rate from random agencies to 1-24 random recipients; a
   recipient whose poll finds something fetches and acknowledges each item.
4. The polling population is stepped up from ``--step-start`` (x ``--step-factor``) until p99 of
   an empty poll exceeds ``--limit-ms`` (calls still unanswered when a step ends count as over
   it), then the main run polls with ``--agencies`` (10,000) agencies. Each step starts once the
   workers are idle again. The report gives p50/p99 per operation, the CPU shares of server,
   client, the PostgreSQL backends of its database and everything else on the machine, and the highest
   population that stayed under the limit.

    .venv/bin/python tools/sim_national.py --backend sqlite --duration 10
    .venv/bin/python tools/sim_national.py --backend postgresql --duration 10 --json /tmp/sim.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from sqlalchemy import insert, make_url, select

from gateway.edxml import AttachmentSource, DocumentMessage, Organization, document_bytes
from gateway.exchange.credentials import hash_secret, new_secret
from gateway.store.database import Database
from gateway.store.models import Agency, Credential

REPO = Path(__file__).resolve().parents[1]
BENCH_APP = REPO / "tools" / "bench_app.py"
NS = "urn:edxml-gateway:soap:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NATIONAL = "000.00.00.G22"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
_ITEM_ID = re.compile(rb"<(?:[\w.-]+:)?itemId>([^<]+)</")
MINISTRIES = 30
PROVINCES = 63
DEPARTMENTS_PER_MINISTRY = 10
DEPARTMENTS_PER_PROVINCE = 20
DISTRICTS_PER_PROVINCE = 15
DRAIN_SECONDS = 10.0
"""After a step's last scheduled call, how long answers are awaited before the rest count as unanswered."""


# -- the directory --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    code: str
    name: str
    level: int
    parent: str | None


def national_directory(size: int) -> list[Unit]:
    """At least ``size`` agencies: the national office, ministries and provinces, their departments and
    districts, and enough communes per district (the number that makes up ``size``)."""
    units = [Unit(NATIONAL, "Văn phòng Chính phủ", 1, None)]
    for m in range(1, MINISTRIES + 1):
        ministry = f"000.00.00.G{m:02d}"
        if ministry == NATIONAL:
            continue
        units.append(Unit(ministry, f"Bộ {m:02d}", 1, None))
        units += [
            Unit(f"000.00.{d:02d}.G{m:02d}", f"Vụ {d:02d} - Bộ {m:02d}", 2, ministry)
            for d in range(1, DEPARTMENTS_PER_MINISTRY + 1)
        ]
    fixed = len(units) + PROVINCES * (1 + DEPARTMENTS_PER_PROVINCE + DISTRICTS_PER_PROVINCE)
    per_district = max(1, math.ceil((size - fixed) / (PROVINCES * DISTRICTS_PER_PROVINCE)))
    if per_district > 99:
        raise SystemExit(f"{size} agencies need more than 99 communes per district; raise DISTRICTS_PER_PROVINCE")
    for p in range(1, PROVINCES + 1):
        province = f"000.00.00.H{p:02d}"
        units.append(Unit(province, f"Ủy ban nhân dân tỉnh {p:02d}", 1, None))
        units += [
            Unit(f"000.00.{d:02d}.H{p:02d}", f"Sở {d:02d} tỉnh {p:02d}", 2, province)
            for d in range(1, DEPARTMENTS_PER_PROVINCE + 1)
        ]
        for d in range(DEPARTMENTS_PER_PROVINCE + 1, DEPARTMENTS_PER_PROVINCE + DISTRICTS_PER_PROVINCE + 1):
            district = f"000.00.{d:02d}.H{p:02d}"
            units.append(Unit(district, f"Ủy ban nhân dân huyện {d:02d} tỉnh {p:02d}", 2, province))
            units += [
                Unit(
                    f"000.{c:02d}.{d:02d}.H{p:02d}",
                    f"Ủy ban nhân dân xã {c:02d} huyện {d:02d} tỉnh {p:02d}",
                    3,
                    district,
                )
                for c in range(1, per_district + 1)
            ]
    return units


def load_directory(database_url: str, units: list[Unit]) -> dict[str, str]:
    """Migrate and insert the agencies with one credential each; return code -> secret."""
    db = Database(database_url)
    now = datetime.now(UTC)
    secrets = {unit.code: new_secret() for unit in units}
    try:
        db.upgrade()
        with db.transaction() as session:
            rows = [
                {
                    "code": u.code,
                    "name": u.name,
                    "level": u.level,
                    "parent_code": u.parent,
                    "active": True,
                    "require_signature": False,
                    "test_code": u.code != NATIONAL,
                    "created_at": now,
                }
                for u in units
            ]
            for start in range(0, len(rows), 5000):
                session.execute(insert(Agency.__table__), rows[start : start + 5000])
            ids = dict(session.execute(select(Agency.code, Agency.id)).all())
            credentials = [
                {"agency_id": ids[code], "secret_hash": hash_secret(secret), "created_at": now}
                for code, secret in secrets.items()
            ]
            for start in range(0, len(credentials), 5000):
                session.execute(insert(Credential.__table__), credentials[start : start + 5000])
    finally:
        db.dispose()
    return secrets


# -- requests -------------------------------------------------------------------------------------


def envelope(agency: str, secret: str, operation: str, body: bytes = b"") -> bytes:
    head = (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP_ENV}" xmlns:gw="{NS}">'
        f"<s:Header><gw:AuthHeader><gw:agencyCode>{agency}</gw:agencyCode><gw:secret>{secret}</gw:secret>"
        f"</gw:AuthHeader></s:Header><s:Body><gw:{operation}>"
    ).encode()
    return head + body + f"</gw:{operation}></s:Body></s:Envelope>".encode()


def http_request(port: int, operation: str, body: bytes) -> bytes:
    """The whole HTTP/1.1 request, built once: the client only writes bytes."""
    head = (
        f"POST /soap HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/xml; charset=utf-8\r\n"
        f'SOAPAction: "{operation}"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n'
    ).encode()
    return head + body


def build_documents(
    count: int, codes: list[str], secrets: dict[str, str], port: int, rng: random.Random
) -> list[bytes]:
    """``count`` sendDocument requests, each from a random agency to 1-24 random others (20 KB attachment)."""
    attachment = os.urandom(20_000)
    requests = []
    for n in range(count):
        sender = rng.choice(codes)
        recipients = rng.sample([c for c in rng.sample(codes, 30) if c != sender], rng.randint(1, 24))
        number = f"SIM{n:07d}"
        message = DocumentMessage(
            sender=Organization(sender, sender),
            recipients=tuple(Organization(code, code) for code in recipients),
            code_number=number,
            code_notation="UBND-VP",
            promulgation_date=date(2026, 11, 20),
            type_code=1,
            type_name="Công văn",
            subject=f"Về việc mô phỏng liên thông văn bản toàn quốc số {n}",
            document_id=f"{sender},2026/11/20,{number}/UBND-VP",
        )
        edxml = document_bytes(message, [AttachmentSource("cv.pdf", "application/pdf", data=attachment)])
        body = b"<gw:document>" + base64.b64encode(edxml) + b"</gw:document>"
        requests.append(http_request(port, "sendDocument", envelope(sender, secrets[sender], "sendDocument", body)))
    return requests


# -- the client -----------------------------------------------------------------------------------


@dataclass
class Observed:
    """Latencies (s) per operation, errors, and how late the client started what it had scheduled."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    unanswered: int = 0
    """Calls still waiting when the step's drain time ran out (an overloaded server): counted as over any limit."""

    def record(self, operation: str, seconds: float) -> None:
        self.latencies.setdefault(operation, []).append(seconds)

    def fail(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message[:300])


class Client:
    """Raw HTTP over asyncio: one connection per call (gunicorn sync workers close each one)."""

    def __init__(self, port: int, secrets: dict[str, str], observed: Observed) -> None:
        self.port = port
        self.secrets = secrets
        self.observed = observed
        self.polls = {
            code: http_request(port, "getPendingDocuments", envelope(code, s, "getPendingDocuments"))
            for code, s in secrets.items()
        }

    async def call(self, operation: str, request: bytes) -> bytes | None:
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                writer.write(request)
                await writer.drain()
                data = await asyncio.wait_for(reader.read(), timeout=60)
            finally:
                writer.close()
        except (TimeoutError, OSError) as error:
            self.observed.fail(f"{operation}: {type(error).__name__}: {error}")
            return None
        elapsed = time.perf_counter() - started
        status = data[9:12]
        if status != b"200":
            self.observed.fail(f"{operation}: HTTP {status!r}: {data[-300:]!r}")
            return None
        self.observed.record(operation, elapsed)
        return data

    async def poll(self, code: str) -> None:
        started = time.perf_counter()
        data = await self.call("getPendingDocuments", self.polls[code])
        if data is None:
            return
        items = _ITEM_ID.findall(data)
        self.observed.record("emptyPoll" if not items else "poll with items", time.perf_counter() - started)
        secret = self.secrets[code]
        for item_id in items:
            item = b"<gw:itemId>" + item_id + b"</gw:itemId>"
            fetched = await self.call(
                "getDocument", http_request(self.port, "getDocument", envelope(code, secret, "getDocument", item))
            )
            if fetched is None:
                continue
            await self.call(
                "confirmReceived",
                http_request(self.port, "confirmReceived", envelope(code, secret, "confirmReceived", item)),
            )


async def drive(
    client: Client,
    order: list[str],
    population: int,
    period: float,
    duration: float,
    documents: list[bytes],
    document_rate: float,
) -> None:
    """Start each poll and each send at its scheduled instant for ``duration`` seconds."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    tasks: set[asyncio.Task[Any]] = set()
    poll_gap = period / population
    send_gap = 1 / document_rate if document_rate > 0 else math.inf
    next_poll, next_send, polls, sends = start, start + send_gap / 2, 0, 0
    end = start + duration
    while True:
        now = loop.time()
        due = min(next_poll, next_send)
        if due >= end:
            break
        if due > now:
            await asyncio.sleep(due - now)
            continue
        client.observed.lag.append(now - due)
        if next_poll <= next_send:
            coroutine = client.poll(order[polls % population])
            polls += 1
            next_poll = start + polls * poll_gap
        else:
            coroutine = client.call("sendDocument", documents[sends % len(documents)])
            sends += 1
            next_send = start + send_gap / 2 + sends * send_gap
        task = asyncio.create_task(coroutine)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
    for task in tasks:
        task.cancel()
    client.observed.unanswered = len(tasks)


# -- measuring ------------------------------------------------------------------------------------


def _machine_cpu() -> tuple[float, float]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - fields[3] - fields[4]) / tick, sum(fields[:8]) / tick


def _tree_cpu(root: psutil.Process) -> float:
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def _database_cpu(database: str | None) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``database`` (its process title names it)."""
    if not database:
        return {}
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            title = " ".join(process.info["cmdline"] or [])
            if title.startswith("postgres:") and f" {database} " in f"{title} ":
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
    return found


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


class Server:
    """tools/bench_app.py on a free port, in its own process group."""

    def __init__(self, data_dir: Path, database_url: str, workers: int) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir), GATEWAY_DATABASE_URL=database_url)
        self.log_path = data_dir / "gateway.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(BENCH_APP), "--no-prepare", "--workers", str(workers), "--port", str(self.port)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.root = psutil.Process(self.process.pid)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited; see {self.log_path}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5),
            ):
                if len(self.root.children()) == workers:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the gateway did not start; see {self.log_path}")

    def settle(self, timeout: float = 120.0) -> None:
        """Wait until the workers are idle: an overloaded step leaves a backlog the next one must not inherit."""
        deadline = time.monotonic() + timeout
        before = _tree_cpu(self.root)
        while time.monotonic() < deadline:
            time.sleep(1.0)
            after = _tree_cpu(self.root)
            if after - before < 0.05:
                return
            before = after

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def run_step(
    server: Server,
    secrets: dict[str, str],
    order: list[str],
    population: int,
    args: argparse.Namespace,
    documents: list[bytes],
) -> dict[str, Any]:
    """One population for ``args.duration`` seconds; its figures."""
    observed = Observed()
    client = Client(server.port, {code: secrets[code] for code in order[:population]}, observed)
    server_cpu, own_cpu, (busy, total) = _tree_cpu(server.root), _own_cpu(), _machine_cpu()
    database_before = _database_cpu(args.pg_database)
    started = time.monotonic()
    asyncio.run(drive(client, order, population, args.period, args.duration, documents, args.document_rate))
    wall = time.monotonic() - started
    server_cpu, own_cpu = _tree_cpu(server.root) - server_cpu, _own_cpu() - own_cpu
    busy_after, total_after = _machine_cpu()
    busy, total = busy_after - busy, total_after - total
    database_cpu = sum(cpu - database_before.get(pid, 0.0) for pid, cpu in _database_cpu(args.pg_database).items())
    operations = {
        name: {
            "count": len(values),
            "per_second": len(values) / wall,
            "p50_ms": percentile(values, 0.5) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
        }
        for name, values in sorted(observed.latencies.items())
    }
    empty = observed.latencies.get("emptyPoll", []) + [math.inf] * observed.unanswered
    answered = sum(
        len(values) for name, values in observed.latencies.items() if name not in ("emptyPoll", "poll with items")
    )
    cpu_per_call = server_cpu / answered if answered else math.nan
    return {
        "population": population,
        "unanswered": observed.unanswered,
        "polls_per_s_scheduled": population / args.period,
        "wall_s": wall,
        "operations": operations,
        "empty_poll_p99_ms": percentile(empty, 0.99) * 1000,
        "client_lag_p99_ms": percentile(observed.lag, 0.99) * 1000,
        "server_cpu_ms_per_call": cpu_per_call * 1000,
        "cpu_bound_population": (os.cpu_count() or 1) * args.period / cpu_per_call if answered else math.nan,
        "cpu_share": {
            "server": server_cpu / total if total else 0.0,
            "client": own_cpu / total if total else 0.0,
            "PostgreSQL (this database)": database_cpu / total if total else 0.0,
            "other processes": max(0.0, busy - server_cpu - own_cpu - database_cpu) / total if total else 0.0,
            "idle": max(0.0, 1 - busy / total) if total else 0.0,
        },
        "errors": observed.errors,
        "error_samples": observed.error_samples,
    }


def print_step(step: dict[str, Any]) -> None:
    print(
        f"\n-- population {step['population']:,} (scheduled {step['polls_per_s_scheduled']:.0f} polls/s), "
        f"{step['wall_s']:.1f} s --"
    )
    print(f"{'operation':<22}{'count':>8}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for name, op in step["operations"].items():
        print(f"{name:<22}{op['count']:>8}{op['per_second']:>9.1f}{op['p50_ms']:>9.1f}{op['p99_ms']:>9.1f}")
    shares = ", ".join(f"{name} {value:.0%}" for name, value in step["cpu_share"].items())
    print(f"CPU share of the machine: {shares}")
    print(
        f"server CPU per answered call {step['server_cpu_ms_per_call']:.1f} ms: with every core to itself the "
        f"server could take about {step['cpu_bound_population']:,.0f} agencies at this mix (arithmetic, not a p99)"
    )
    print(
        f"client start lag p99 {step['client_lag_p99_ms']:.1f} ms, unanswered at the end {step['unanswered']}, "
        f"errors {step['errors']}; p99 of an empty poll (unanswered counted as over) {step['empty_poll_p99_ms']:.1f} ms"
    )
    for sample in step["error_samples"]:
        print(f"  error: {sample}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("GATEWAY_BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--agencies", type=int, default=10_000, help="directory size of the main run (at least 10,000)")
    parser.add_argument("--period", type=float, default=30.0, help="seconds between two polls of one agency")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per population step")
    parser.add_argument("--document-rate", type=float, default=2.0, help="documents sent per second")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--limit-ms", type=float, default=100.0, help="p99 of an empty poll to stay under")
    parser.add_argument("--step-start", type=int, default=250, help="first population of the step-up search")
    parser.add_argument("--step-factor", type=float, default=1.5)
    parser.add_argument("--max-population", type=int, default=40_000, help="largest step (and directory size)")
    parser.add_argument("--seed", type=int, default=20261120)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.agencies < 10_000:
        parser.error("the simulation is about a national directory: --agencies must be at least 10,000")
    rng = random.Random(args.seed)
    units = national_directory(max(args.agencies, args.max_population))
    scratch = Path(tempfile.mkdtemp(prefix="edxml-sim-"))
    pg_name = args.pg_database = None
    if args.backend == "postgresql":
        pg_name = f"edxml_sim_{os.getpid()}"
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        args.pg_database = pg_name
        database_url = make_url(args.pg_url).set(drivername="postgresql+psycopg", database=pg_name)
        database_url = database_url.render_as_string(hide_password=False)
    else:
        database_url = f"sqlite:///{scratch / 'var' / 'gateway.sqlite3'}"
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    report: dict[str, Any] = {
        "command": " ".join(
            [".venv/bin/python", "tools/sim_national.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "commit": commit.stdout.strip(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "backend": args.backend,
        "directory": {
            "agencies": len(units),
            "by_level": {level: sum(1 for u in units if u.level == level) for level in (1, 2, 3)},
        },
        "steps": [],
    }
    server = None
    try:
        started = time.monotonic()
        secrets = load_directory(database_url, units)
        report["directory"]["load_s"] = time.monotonic() - started
        print(
            f"directory: {len(units):,} agencies ({report['directory']['by_level']}) loaded in "
            f"{report['directory']['load_s']:.1f} s on {args.backend}",
            file=sys.stderr,
        )
        server = Server(scratch / "var", database_url, args.workers)
        order = list(secrets)
        rng.shuffle(order)
        search = []
        population = args.step_start
        while population <= min(args.max_population, len(units)):
            search.append(population)
            population = int(population * args.step_factor)
        documents = build_documents(
            max(1, int(args.document_rate * (args.duration + DRAIN_SECONDS) * (len(search) + 1))),
            order[: args.agencies],
            secrets,
            server.port,
            rng,
        )
        print("Stepping the population up until p99 of an empty poll exceeds the limit:", file=sys.stderr)
        best = None
        for population in search:
            server.settle()
            step = run_step(server, secrets, order, population, args, documents)
            report["steps"].append(step)
            print_step(step)
            if step["empty_poll_p99_ms"] >= args.limit_ms or step["errors"]:
                break
            best = population
        server.settle()
        main_run = run_step(server, secrets, order, args.agencies, args, documents)
        report["main"] = main_run
        print("\nMain run:", file=sys.stderr)
        print_step(main_run)
        report["highest_population_under_limit"] = best
    finally:
        if server is not None:
            server.stop()
        if pg_name:
            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        shutil.rmtree(scratch, ignore_errors=True)
    first = report["main"]
    print(
        f"\nMain run ({first['population']:,} agencies of {len(units):,}, one poll each per {args.period:g} s, "
        f"{args.document_rate:g} documents/s with 1-24 recipients): empty poll p50 "
        f"{first['operations'].get('emptyPoll', {}).get('p50_ms', float('nan')):.1f} ms, "
        f"p99 {first['empty_poll_p99_ms']:.1f} ms"
    )
    last = report["steps"][-1]
    if best is None:
        verdict = f"below {args.step_start:,} ({last['population']:,} gave {last['empty_poll_p99_ms']:.0f} ms)"
    elif last["population"] == best:
        verdict = f"at least {best:,} (the largest step run: raise --max-population to go further)"
    else:
        verdict = f"{best:,} ({last['population']:,} gave {last['empty_poll_p99_ms']:.0f} ms)"
    print(f"Highest polling population with p99 of an empty poll under {args.limit_ms:g} ms: {verdict}")
    print(f"commit {report['commit']}, {report['date']}, {report['machine']}, command: {report['command']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
