"""Gateway processes for the tests that need real ones: the entry point, a free port, a process group.

Every test that starts ``edxml-gateway`` (a network of gateways, several nodes, crash and hostile
runs) starts it the same way: the console script beside the running interpreter (never a
``.venv/`` path), in its own process group so that a SIGKILL takes master and workers at once,
its output appended to a log file the failure message can quote.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests


def gateway_command() -> list[str]:
    """The ``edxml-gateway`` console script beside this interpreter, else the module through it."""
    script = Path(sys.executable).parent / "edxml-gateway"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def vm_kib(pid: int, field_name: str) -> int:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of a process, in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


class Process:
    """One gateway subprocess in its own process group, its output appended to a log file."""

    def __init__(self, label: str, command: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.label, self.command, self.env, self.log, self.cwd = label, command, env, log, cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            out.write(f"\n==== {time.strftime('%H:%M:%S')} start {' '.join(self.command)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def children(self) -> list[int]:
        """The pids of the process's direct children (gunicorn's workers), none once it is gone."""
        with contextlib.suppress(psutil.NoSuchProcess):
            return [child.pid for child in psutil.Process(self.pid).children()]
        return []

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and all its descendants so far."""
        total = 0.0
        root = psutil.Process(self.pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def wait_healthy(self, port: int, timeout: float = 60) -> None:
        """Return once ``/health`` on ``port`` answers 200; RuntimeError with the log's tail if it exits or is late."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is None or self.popen.poll() is not None:
                code = None if self.popen is None else self.popen.returncode
                raise RuntimeError(f"{self.label} exited with {code}:\n{self.tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} did not answer /health within {timeout:.0f} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL the whole group at once: nothing gets to clean up, like a power cut."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self.popen = None

    def stop(self, grace: float = 20) -> None:
        """SIGTERM the group, SIGKILL what is still there after ``grace`` seconds (workers included)."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)
        self.kill()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no output)"
