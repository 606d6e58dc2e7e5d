"""The built wheel, installed without ``-e`` into a fresh virtual environment, is a working gateway (issue 11.3).

``python -m build`` makes the sdist and, from it, the wheel (so both carry the contracts);
a new venv installs the wheel with its ``client`` extra from the machine's pip configuration.
Then, from a directory that is not the repository, with the venv's own ``edxml-gateway``:
``db upgrade``, ``agencies load-shipped``, ``credentials issue``, ``serve`` on a free port; the
WSDL it serves equals wsdl/edxml-gateway.wsdl except the address; a document is sent with the
client command (validated by the gateway against the XSDs shipped in the wheel) and shows up in
the recipient's pending list; the installed package reads its XSDs and WSDL from site-packages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.processes import free_port

from gateway.config import WSDL_DIR
from gateway.soap.binding import WSDL_LOCATION

REPO = Path(__file__).resolve().parents[2]
SENDER, RECIPIENT = "000.00.00.G22", "000.00.00.H41"

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the freshly built wheel (and its ``client`` extra) installed; returns its bin directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "VIRTUAL_ENV", "PYTHONPATH"))}
    run([sys.executable, "-m", "build", "--outdir", str(tmp / "dist"), str(REPO)], tmp, env)
    [wheel] = (tmp / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for contract in ("gateway/wsdl/edxml-gateway.wsdl", "gateway/xsd/edxml-document.xsd", "gateway/data/agencies.csv"):
        assert contract in names, f"{contract} is not in {wheel.name}"
    run([sys.executable, "-m", "venv", str(tmp / "venv")], tmp, env)
    bin_dir = tmp / "venv" / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[client]"], tmp, env)
    return bin_dir


def test_the_wheel_carries_its_contracts(installed: Path) -> None:
    probe = (
        "import gateway, gateway.config as c, gateway.edxml.validation as v; "
        "print(gateway.__file__); print(c.WSDL_DIR); print(v.XSD_DIR)"
    )
    out = run([str(installed / "python"), "-c", probe], installed, {"PATH": os.environ.get("PATH", "")})
    package, wsdl_dir, xsd_dir = (Path(line) for line in out.split())
    site = installed.parent / "lib"
    assert site in package.parents, f"the venv imports the repository's gateway: {package}"
    assert site in wsdl_dir.parents and site in xsd_dir.parents
    assert (wsdl_dir / "edxml-gateway.wsdl").read_bytes() == (WSDL_DIR / "edxml-gateway.wsdl").read_bytes()
    for xsd in (REPO / "xsd").glob("*.xsd"):
        assert (xsd_dir / xsd.name).read_bytes() == xsd.read_bytes(), f"{xsd.name} differs in the wheel"


@contextlib.contextmanager
def serving(bin_dir: Path, cwd: Path, env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    log = (cwd / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(bin_dir / "edxml-gateway"), "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (cwd / "serve.log").read_text()
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the installed gateway did not answer /health within 60 s")
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
        log.close()


def test_the_installed_wheel_migrates_serves_and_exchanges(installed: Path, tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "GATEWAY_DATA_DIR": str(tmp_path / "data"), "LANG": "C.UTF-8"}
    cli = str(installed / "edxml-gateway")
    run([cli, "db", "upgrade"], tmp_path, env)
    assert "101 added" in run([cli, "agencies", "load-shipped"], tmp_path, env)
    secrets = {code: run([cli, "credentials", "issue", code], tmp_path, env).strip() for code in (SENDER, RECIPIENT)}
    port = free_port()
    url = f"http://127.0.0.1:{port}/soap"
    with serving(installed, tmp_path, env, port):
        served = requests.get(f"{url}?wsdl", timeout=30).content
        published = (WSDL_DIR / "edxml-gateway.wsdl").read_bytes()
        assert served == published.replace(WSDL_LOCATION.encode(), url.encode())
        attachment = tmp_path / "cong-van.txt"
        attachment.write_text("Công văn thử nghiệm từ bản cài đặt wheel\n", encoding="utf-8")
        caller = ["--url", url, "--agency"]
        sent = run(
            [
                cli,
                "send",
                str(attachment),
                "--to",
                RECIPIENT,
                "--subject",
                "Kiểm tra bản cài wheel",
                *caller,
                SENDER,
                "--secret",
                secrets[SENDER],
            ],
            tmp_path,
            env,
        )
        assert RECIPIENT in sent, sent
        pending = run([cli, "pending", *caller, RECIPIENT, "--secret", secrets[RECIPIENT]], tmp_path, env)
        assert SENDER in pending, pending
