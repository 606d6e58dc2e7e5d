"""Every SOAP stack runs the whole exchange story against a real gateway subprocess.

One gateway (``edxml-gateway serve --demo``, SQLite in a temp dir, free port) for the module;
each stack is its own test, with its own freshly written letter (new DocumentId), driven by
run.py exactly as a person would run it. A stack that is not installed is skipped with the
reason (run ``bash tests/interop/install.sh``); any failed check fails the test with the
client's output.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from make_document import letter

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
STACKS = ["zeep", "suds", "php", "node", "mono", "gsoap", "java", "axis1"]
STARTUP_SECONDS = 120
STACK_SECONDS = 600  # first stub generation and compilation on a slow CI machine included


@dataclass
class Gateway:
    wsdl: str
    credentials: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gateway_command() -> list[str]:
    script = Path(sys.executable).parent / "edxml-gateway"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("gateway")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "EDXML_"))}
    env["GATEWAY_DATA_DIR"] = str(data)
    log = data / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_gateway_command(), "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=data,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the gateway exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                    if resp.status == 200 and (data / "demo-credentials.json").exists():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /health after {STARTUP_SECONDS}s:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield Gateway(f"http://127.0.0.1:{port}/soap?wsdl", data / "demo-credentials.json")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(STACK_SECONDS + 120)
@pytest.mark.parametrize("stack", STACKS)
def test_stack_runs_the_whole_story(stack: str, gateway: Gateway, tmp_path: Path) -> None:
    document = tmp_path / "letter.edxml"
    document.write_bytes(letter(f"{time.time_ns()}"))
    build = tmp_path / "build"
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "run.py"),
            "--wsdl",
            gateway.wsdl,
            "--credentials",
            str(gateway.credentials),
            "--document",
            str(document),
            "--stacks",
            stack,
            "--build-dir",
            str(build),
            "--timeout",
            str(STACK_SECONDS),
            "-v",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=STACK_SECONDS + 60,
    )
    out = proc.stdout
    if re.search(rf"^interop: {stack}\s+SKIP", out, re.M):
        reason = next((line.strip() for line in out.splitlines() if "SKIP:" in line), "not installed")
        pytest.skip(f"{stack}: {reason}")
    if proc.returncode != 0 or "story passed" not in out:
        pytest.fail(f"{stack} failed (run.py rc={proc.returncode}):\n{out}", pytrace=False)
    shutil.rmtree(build, ignore_errors=True)  # keep only a failing stack's stubs
