"""``edxml-gateway demo-network``: one command starts national + two provinces, a document crosses
from province A to province B, and Ctrl+C (SIGINT) stops every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest
import requests
import zeep
from harness import A_COMMUNE, B_DEPARTMENT, NS, Inbox, gateway_command, sha256, wait_until
from support.letters import official_letter
from zeep.transports import Transport

STARTUP = 240  # about thirty CLI runs and six processes on a loaded two-core machine


def _free_run(count: int) -> int:
    """A base port with ``count`` consecutive free ports (the demo takes base, base+1, base+2)."""
    for _ in range(200):
        base = random.randint(20000, 60000)
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError("no run of free ports found")


def _client(url: str, code: str, secret: str) -> zeep.Client:
    client = zeep.Client(f"{url}?wsdl", transport=Transport(timeout=60, operation_timeout=120))
    client.set_default_soapheaders([client.get_element(f"{{{NS}}}AuthHeader")(agencyCode=code, secret=secret)])
    return client


def _answers(port: int) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    return False


@pytest.mark.slow
@pytest.mark.timeout(STARTUP + 180)
def _sigint_ignored() -> None:
    """Start demo-network as a shell's background job would: with SIGINT ignored, which it inherits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_demo_network_serves_three_instances_and_stops_them_all_on_sigint(tmp_path: Path) -> None:
    base = _free_run(3)
    data = tmp_path / "demo"
    log = tmp_path / "demo-network.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "EDXML_"))}
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [*gateway_command(), "demo-network", "--base-port", str(base), "--data-dir", str(data)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=tmp_path,
            start_new_session=True, preexec_fn=_sigint_ignored,
        )  # fmt: skip
    children: list[psutil.Process] = []
    try:

        def up() -> bool:
            if demo.poll() is not None:
                raise AssertionError(f"demo-network exited with {demo.returncode}")
            return (data / "credentials.json").is_file() and all(_answers(base + i) for i in range(3))

        try:
            wait_until(up, STARTUP, "the three demo instances to answer /health", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text(errors='replace')[-4000:]}") from None
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 6, f"serve + relay for three instances, found {[c.cmdline() for c in children]}"

        known = json.loads((data / "credentials.json").read_text(encoding="utf-8"))["agencies"]
        url = {code: f"http://127.0.0.1:{base + ['national', 'HA', 'HB'].index(e['instance'])}/soap"
               for code, e in known.items()}  # fmt: skip
        sender = _client(url[A_COMMUNE], A_COMMUNE, known[A_COMMUNE]["secret"])
        wait_until(
            lambda: B_DEPARTMENT in {a.code for a in sender.service.getAgencies() or []},
            90, "province A's directory to list B's department",
        )  # fmt: skip
        edxml = official_letter(A_COMMUNE, [B_DEPARTMENT], number="2468")
        sender.service.sendDocument(document=edxml)
        recipient = _client(url[B_DEPARTMENT], B_DEPARTMENT, known[B_DEPARTMENT]["secret"])
        (item,) = Inbox(recipient).wait_for(bool, 90, "the document at B's department")
        fetched = recipient.service.getDocument(itemId=item.itemId)
        assert fetched.edxml == edxml and fetched.sha256 == sha256(edxml)

        os.kill(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)

        def all_gone() -> bool:
            return not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

        wait_until(all_gone, 30, "every process demo-network started to end")
        assert not any(_answers(base + i) for i in range(3)), "a demo instance still answers after Ctrl+C"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
