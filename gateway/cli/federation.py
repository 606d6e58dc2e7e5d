"""Operator commands of the network of gateways: peers, the relay, and a local demo network.

Registered in gateway/cli.py with one ``main.add_command`` line each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from gateway.cli import ui
from gateway.config import Settings
from gateway.federation import outbox, peers
from gateway.store.locks import singleton

RELAY_LOCK = "relay"


# -- peers ----------------------------------------------------------------------------------------


@click.group("peers")
def peers_group() -> None:
    """Other gateway instances (provinces at the national hub; the upstream at a province)."""


@peers_group.command("add")
@click.argument("instance_id")
@click.option("--name", required=True, help="Human name of the instance, e.g. 'Cổng tỉnh Nghệ An'.")
@click.option(
    "--role", type=click.Choice(peers.ROLES), default="provincial", show_default=True, help="The peer's tier."
)
@click.pass_context
def peers_add(ctx: click.Context, instance_id: str, name: str, role: str) -> None:
    """Register a peer instance and print its secret once (it goes into the peer's GATEWAY_UPSTREAM_SECRET)."""
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        secret = peers.add_peer(session, instance_id, name, role, ui.now())
    err = ui.err()
    err.print(f"Added peer {instance_id} ({role}). Its secret (set it as GATEWAY_UPSTREAM_SECRET there):", markup=False)
    ui.out().print(secret, markup=False)
    err.print("This secret is shown only once: the gateway keeps only its hash.", markup=False)


@peers_group.command("list")
@click.pass_context
def peers_list(ctx: click.Context) -> None:
    """List peer instances."""
    with ui.open_database(ui.settings_of(ctx)).transaction(readonly=True) as session:
        rows = [(p.instance_id, p.name, p.role, p.active, p.created_at) for p in peers.list_peers(session)]
    table = Table(title=f"{len(rows)} peers")
    for column in ("instance", "name", "role", "active", "created"):
        table.add_column(column)
    for instance_id, name, role, active, created in rows:
        table.add_row(
            Text(instance_id), Text(name), role, "yes" if active else "no", created.strftime("%Y-%m-%d %H:%M")
        )
    ui.out().print(table)


# -- relay ----------------------------------------------------------------------------------------


def check_relay_settings(settings: Settings) -> None:
    """A provincial relay needs its upstream: refuse with one clear line otherwise."""
    if settings.role == "provincial" and (not settings.upstream_url or not settings.upstream_secret):
        ui.fail(
            "error: a provincial instance relays through its national instance: set GATEWAY_UPSTREAM_URL and "
            "GATEWAY_UPSTREAM_SECRET (the secret `edxml-gateway peers add` printed there)."
        )


def run_relay(settings: Settings, once: bool) -> None:
    """Run the relay loop under the instance's singleton lock until SIGTERM/SIGINT."""
    import logging

    from gateway.app import Gateway
    from gateway.federation.relay import Relay
    from gateway.federation.service import FederationService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    check_relay_settings(settings)
    gateway = Gateway.open(settings)
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    relay = Relay(FederationService(gateway.exchange))
    waiting_said = False
    while not stop.is_set():
        with singleton(gateway.db, RELAY_LOCK, settings.data_dir) as held:
            if held:
                ui.err().print(
                    f"Relay of {settings.instance_id} ({settings.role}) running"
                    + (f", upstream {settings.upstream_url}" if settings.role == "provincial" else ""),
                    markup=False,
                )
                relay.run(stop, once=once)
                return
        if once:
            ui.fail(f"error: another relay is already running for instance {settings.instance_id}; nothing done.")
        if not waiting_said:
            ui.err().print("Another relay is running for this instance; waiting to take over.", markup=False)
            waiting_said = True
        stop.wait(max(settings.relay_interval, 1.0))


@click.group("relay", invoke_without_command=True)
@click.option("--once", is_flag=True, help="One cycle, then exit (exits at once if another relay runs).")
@click.pass_context
def relay_group(ctx: click.Context, once: bool) -> None:
    """Run the relay loop (push to upstream, pull from upstream, directory sync), or inspect it."""
    if ctx.invoked_subcommand is None:
        run_relay(ui.settings_of(ctx), once)


@relay_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def relay_status(ctx: click.Context, as_json: bool) -> None:
    """Queue depth per next hop, oldest waiting consignment, failures."""
    with ui.open_database(ui.settings_of(ctx)).transaction(readonly=True) as session:
        rows = outbox.stats(session, ui.now())
    if as_json:
        ui.out().print_json(json.dumps([r.__dict__ for r in rows]))
        return
    table = Table(title="Relay outbox per next hop")
    for column in ("next hop", "waiting", "in flight", "failed", "delivered", "oldest waiting (s)"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            Text(r.next_hop),
            str(r.waiting),
            str(r.sending),
            str(r.failed),
            str(r.delivered),
            f"{r.oldest_waiting_seconds:.0f}",
        )
    ui.out().print(table)


@relay_group.command("failed")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def relay_failed(ctx: click.Context, as_json: bool) -> None:
    """Consignments that failed after their last attempt."""
    with ui.open_database(ui.settings_of(ctx)).transaction(readonly=True) as session:
        rows = [
            {
                "consignment": r.id,
                "next_hop": r.next_hop,
                "kind": r.kind,
                "document": r.document_id,
                "recipients": json.loads(r.recipients),
                "attempts": r.attempts,
                "error": r.last_error,
                "created_at": r.created_at.isoformat(),
            }
            for r in outbox.failed_rows(session)
        ]
    if as_json:
        ui.out().print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title=f"{len(rows)} failed consignments")
    for column in ("consignment", "next hop", "kind", "recipients", "attempts", "last error"):
        table.add_column(column, no_wrap=column == "consignment")
    for r in rows:
        table.add_row(
            Text(r["consignment"]),
            Text(r["next_hop"]),
            r["kind"],
            Text(", ".join(r["recipients"])),
            str(r["attempts"]),
            Text(r["error"] or ""),
        )
    ui.out().print(table)


@relay_group.command("requeue")
@click.argument("consignment_id")
@click.pass_context
def relay_requeue(ctx: click.Context, consignment_id: str) -> None:
    """Put a failed consignment back in line with its attempts reset (audited)."""
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        row = outbox.requeue(session, consignment_id, ui.now())
        shown = None if row is None else row.next_hop
    if shown is None:
        ui.fail(f"error: no failed consignment {consignment_id}; see `edxml-gateway relay failed`.")
    ui.out().print(f"Requeued {consignment_id} for {shown}.", markup=False)


def spawn_relay(settings: Settings) -> subprocess.Popen[bytes]:
    """The relay as a background process of ``serve --relay`` (it takes the singleton lock itself)."""
    command = [
        *gateway_command(),
        "--data-dir",
        str(settings.data_dir),
        "--database-url",
        settings.database_url,
        "relay",
    ]
    # Same process group as serve (a group signal reaches both); on Linux the relay is also told to
    # stop when serve dies, even by SIGKILL.
    return subprocess.Popen(command, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def gateway_command() -> list[str]:
    """How to run ``edxml-gateway`` from the interpreter running now (tests never depend on PATH)."""
    script = Path(sys.executable).parent / "edxml-gateway"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from gateway.cli import main; main()"]


# -- demo network ---------------------------------------------------------------------------------

DEMO_INSTANCES: dict[str, dict[str, Any]] = {
    "national": {
        "role": "national",
        "name": "Trục quốc gia",
        "agencies": [
            ("000.00.00.G01", "Bộ Nội vụ", 1, None),
            ("000.00.00.G22", "Văn phòng Chính phủ", 1, None),
        ],
    },
    "HA": {
        "role": "provincial",
        "name": "Tỉnh A (Nghệ An)",
        "agencies": [
            ("000.00.00.H41", "UBND tỉnh Nghệ An", 1, None),
            ("000.00.01.H41", "Sở Nội vụ tỉnh Nghệ An", 2, "000.00.00.H41"),
            ("000.00.24.H41", "UBND huyện Anh Sơn", 2, "000.00.00.H41"),
            ("000.46.24.H41", "UBND xã Cẩm Sơn", 3, "000.00.24.H41"),
            ("000.47.24.H41", "UBND xã Đức Sơn", 3, "000.00.24.H41"),
        ],
    },
    "HB": {
        "role": "provincial",
        "name": "Tỉnh B (Hà Tĩnh)",
        "agencies": [
            ("000.00.00.H14", "UBND tỉnh Hà Tĩnh", 1, None),
            ("000.00.01.H14", "Sở Nội vụ tỉnh Hà Tĩnh", 2, "000.00.00.H14"),
            ("000.46.24.H14", "UBND xã Thạch Hà", 3, "000.00.00.H14"),
        ],
    },
}


def _run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        ui.fail(f"error: {' '.join(command[-4:])} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def _secret_from(output: str) -> str:
    """The secret a command printed alone on stdout."""
    secret = output.strip()
    if not secret or "\n" in secret:
        raise click.ClickException("could not read the secret the gateway printed")
    return secret


@click.command("demo-network")
@click.option("--base-port", default=8100, show_default=True, type=click.IntRange(1, 65000))
@click.option(
    "--data-dir", "data_dir", default=Path("var/demo-network"), type=click.Path(file_okay=False, path_type=Path)
)
def demo_network(base_port: int, data_dir: Path) -> None:
    """Start a local three-instance network (national + two provinces), print URLs and credentials."""
    base = [*gateway_command()]

    def _interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: started in the background of a shell, a process inherits SIGINT ignored.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    processes: list[subprocess.Popen[bytes]] = []
    credentials: dict[str, Any] = {}
    envs: dict[str, dict[str, str]] = {}
    ports = {name: base_port + i for i, name in enumerate(DEMO_INSTANCES)}
    data_dir.mkdir(parents=True, exist_ok=True)
    known_file = data_dir / "credentials.json"
    known: dict[str, Any] = json.loads(known_file.read_text(encoding="utf-8")) if known_file.is_file() else {}
    for name, spec in DEMO_INSTANCES.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            GATEWAY_DATA_DIR=str(data_dir / name),
            GATEWAY_INSTANCE_ID=name,
            GATEWAY_ROLE=spec["role"],
            GATEWAY_RELAY_INTERVAL="1",
        )
        envs[name] = env
        _run([*base, "db", "upgrade"], env)
    fresh = not known
    if fresh:
        for name, spec in DEMO_INSTANCES.items():
            env = envs[name]
            for code, agency_name, level, parent in spec["agencies"]:
                _run(
                    [
                        *base,
                        "agencies",
                        "add",
                        code,
                        agency_name,
                        "--level",
                        str(level),
                        *(["--parent", parent] if parent else []),
                    ],
                    env,
                )
                secret = _secret_from(_run([*base, "credentials", "issue", code], env))
                known.setdefault("agencies", {})[code] = {"instance": name, "secret": secret}
            if spec["role"] == "provincial":
                known.setdefault("peers", {})[name] = _secret_from(
                    _run([*base, "peers", "add", name, "--name", spec["name"]], envs["national"])
                )
        fd = os.open(known_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(known, out, ensure_ascii=False, indent=2)
    credentials = known
    # Everything after the first start is inside the try, so a start that fails or a Ctrl+C while
    # starting still stops the processes already running (their own sessions never see Ctrl+C).
    try:
        for name, spec in DEMO_INSTANCES.items():
            env = envs[name]
            if spec["role"] == "provincial":
                env.update(
                    GATEWAY_UPSTREAM_URL=f"http://127.0.0.1:{ports['national']}",
                    GATEWAY_UPSTREAM_SECRET=credentials["peers"][name],
                )
            processes.append(
                subprocess.Popen([*base, "serve", "--port", str(ports[name])], env=env, start_new_session=True)
            )
            processes.append(subprocess.Popen([*base, "relay"], env=env, start_new_session=True))
        table = Table(title=f"Demo network (credentials also in {known_file})")
        for column in ("instance", "SOAP endpoint", "agency", "secret"):
            table.add_column(column, no_wrap=True)
        for code, entry in credentials["agencies"].items():
            table.add_row(
                entry["instance"],
                f"http://127.0.0.1:{ports[entry['instance']]}/soap",
                Text(code),
                Text(entry["secret"]),
            )
        console = ui.out()
        console.print(table)
        console.print(
            "Dashboards: /dashboard on each port (set GATEWAY_OPERATOR_PASSWORD first). Ctrl+C stops all.",
            markup=False,
        )
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        ui.err().print("A demo process ended; stopping the network.", markup=False)
    except KeyboardInterrupt:
        pass
    except OSError as error:
        ui.fail(f"error: could not start a demo process: {error}")
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
