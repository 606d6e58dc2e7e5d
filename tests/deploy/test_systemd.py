"""deploy/systemd: the unit is valid, hardened and unprivileged, and its command line serves (issue 11.6).

``systemd-analyze verify`` and ``security --offline`` check the unit (with the install paths
pointed at this venv and the shipped environment file) where systemd-analyze exists; the
essentials are also checked by parsing it. Then the unit's own ExecStartPre and ExecStart,
with the variables of the shipped environment file (only the data directory and port changed),
migrate a store and serve /health: the file and the command line agree with the CLI.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from support.processes import free_port

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "edxml-gateway.service"
ENV_FILE = REPO / "deploy" / "systemd" / "edxml-gateway.env"
INSTALLED_BIN = "/opt/edxml-gateway/bin/edxml-gateway"
INSTALLED_ENV = "/etc/edxml-gateway/edxml-gateway.env"
BIN = Path(sys.executable).parent / "edxml-gateway"
ANALYZE = shutil.which("systemd-analyze")


def unit_options() -> dict[str, list[str]]:
    """Every ``Key=value`` of the [Service] section, repeated keys kept in order."""
    options: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            options.setdefault(key, []).append(value)
    return options


def environment_file() -> dict[str, str]:
    """The shipped environment file as systemd reads it (KEY=VALUE lines, comments skipped)."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string("[env]\n" + ENV_FILE.read_text())
    return dict(parser["env"])


def rendered_unit(tmp_path: Path) -> Path:
    path = tmp_path / "edxml-gateway.service"
    path.write_text(UNIT.read_text().replace(INSTALLED_BIN, str(BIN)).replace(INSTALLED_ENV, str(ENV_FILE)))
    return path


def test_the_unit_runs_unprivileged_with_its_state_and_secrets_from_the_environment_file() -> None:
    options = unit_options()
    assert options.get("DynamicUser") == ["yes"] or options.get("User", ["root"])[0] not in ("root", "0", "")
    assert options["EnvironmentFile"] == [INSTALLED_ENV]
    assert options["StateDirectory"] == ["edxml-gateway"]
    assert "GATEWAY_DATA_DIR=/var/lib/edxml-gateway" in options["Environment"]
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "ProtectHome=yes"):
        key, value = hardening.split("=")
        assert options.get(key) == [value], hardening
    assert options["CapabilityBoundingSet"] == [""]
    assert "/var/lib/edxml-gateway" in options["ReadWritePaths"][0].split()
    assert options["ExecStart"][0].startswith(f"{INSTALLED_BIN} serve --production ")
    assert options["ExecStartPre"] == [f"{INSTALLED_BIN} db upgrade"]
    assert "StandardOutput" not in options or options["StandardOutput"] == ["journal"]


def test_the_environment_file_sets_only_known_variables() -> None:
    env = environment_file()
    assert {"SERVE_HOST", "SERVE_PORT", "SERVE_WORKERS"} <= env.keys()
    from gateway.config import Settings

    fields = {f"GATEWAY_{name.upper()}" for name in Settings.__dataclass_fields__}
    commented = set(re.findall(r"^#(GATEWAY_[A-Z_]+)=", ENV_FILE.read_text(), re.M))
    unknown = {k for k in env.keys() | commented if k.startswith("GATEWAY_")} - fields
    assert not unknown, f"the environment file names settings the gateway does not have: {sorted(unknown)}"
    assert int(env["GATEWAY_MAX_DOCUMENT_BYTES"]) == Settings().max_document_bytes


def test_the_environment_files_values_are_accepted_uncommented_too() -> None:
    """Each ``#GATEWAY_X=value`` example is a value the gateway starts with, as is the file itself."""
    from gateway.config import Settings

    examples = dict(re.findall(r"^#(GATEWAY_[A-Z_]+)=(.*)$", ENV_FILE.read_text(), re.M))
    assert {"GATEWAY_TRUSTED_PROXY", "GATEWAY_PUBLIC_URL"} <= examples.keys()
    for name, value in examples.items():
        Settings.from_env({**environment_file(), name: value})
    assert Settings.from_env({"GATEWAY_TRUSTED_PROXY": examples["GATEWAY_TRUSTED_PROXY"]}).trusted_proxy


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit_and_rates_it_hardened(tmp_path: Path) -> None:
    assert ANALYZE is not None
    unit = rendered_unit(tmp_path)
    verify = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and unit.name not in verify.stderr, verify.stderr
    security = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--threshold=20", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert security.returncode == 0, f"exposure above 2.0:\n{security.stdout[-2000:]}"


def test_the_units_commands_migrate_and_serve(tmp_path: Path) -> None:
    options = unit_options()
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", **environment_file()}
    env |= {"GATEWAY_DATA_DIR": str(tmp_path / "state"), "SERVE_PORT": str(free_port()), "SERVE_WORKERS": "1"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")

    def command(line: str) -> list[str]:
        expanded = re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], line.replace(INSTALLED_BIN, str(BIN)))
        return shlex.split(expanded)

    subprocess.run(command(options["ExecStartPre"][0]), env=env, check=True, capture_output=True, timeout=120)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command(options["ExecStart"][0]), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{env['SERVE_PORT']}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no /health within 60 s:\n{log.read_text()}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert process.returncode == 0, (
        f"SIGTERM did not stop the service cleanly ({process.returncode}):\n{log.read_text()}"
    )
    assert "gateway.access" in log.read_text(), "the access log does not reach stderr (the journal)"
