"""Gateway nodes as real ``edxml-gateway serve`` processes, nginx in front of them, and a raw SOAP client.

Distinctly named (not ``helpers``) because pytest puts every test directory on ``sys.path``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from lxml import etree
from support.processes import Process, free_port, gateway_command

from gateway import directory
from gateway.store.database import Database

REPO = Path(__file__).resolve().parents[2]
SHIPPED_BALANCER_CONF = REPO / "deploy" / "nginx" / "several-nodes.conf"
NS = "urn:edxml-gateway:soap:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def prepare_store(database_url: str, agencies: list[str]) -> dict[str, str]:
    """Migrate, load the shipped directory and issue one secret per agency (what an operator does once)."""
    db = Database(database_url)
    try:
        db.upgrade()
        now = datetime.now(UTC)
        with db.transaction() as session:
            directory.load_shipped_directory(session, now)
            return {code: directory.issue_credential(session, code, now) for code in agencies}
    finally:
        db.dispose()


@dataclass
class Node:
    """One gateway node: ``edxml-gateway serve --workers N --port P`` in its own process group."""

    name: str
    data_dir: Path
    env: dict[str, str]
    workers: int = 2
    port: int = 0
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/soap"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self) -> Node:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        command = [*gateway_command(), "serve", "--workers", str(self.workers), "--port", str(self.port)]
        env = {**os.environ, "GATEWAY_DATA_DIR": str(self.data_dir), **self.env}
        log = self.data_dir.parent / f"{self.name}.log"
        self.process = Process(self.name, command, env, log, self.data_dir).start()
        return self

    def wait_healthy(self, timeout: float = 60) -> None:
        assert self.process is not None
        self.process.wait_healthy(self.port, timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group (gunicorn master and workers at once, like a lost machine)."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).is_file()), None)


@dataclass
class Balancer:
    """nginx running the shipped ``deploy/nginx/several-nodes.conf`` with the test's ports, in a private prefix."""

    prefix: Path
    nodes: list[int]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    config: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/soap"

    def render(self) -> str:
        """The shipped server config with this test's node ports and listen port."""
        lines = SHIPPED_BALANCER_CONF.read_text(encoding="utf-8").splitlines()
        servers = [i for i, line in enumerate(lines) if re.match(r"\s*server 127\.0\.0\.1:\d+ [^;]*;$", line)]
        assert len(servers) >= 2, "the shipped config lists the nodes as `server 127.0.0.1:PORT ...;`"
        ours = [re.sub(r":\d+ ", f":{port} ", lines[servers[0]]) for port in self.nodes]
        kept = [line for i, line in enumerate(lines) if i not in servers]
        kept[servers[0] : servers[0]] = ours
        shipped = "\n".join(kept) + "\n"
        shipped, count = re.subn(r"listen \d+;", f"listen 127.0.0.1:{self.port};", shipped)
        assert count == 1
        return shipped

    def start(self) -> Balancer:
        binary = nginx_binary()
        assert binary, "nginx is not installed"
        self.port = self.port or free_port()
        for sub in ("logs", "temp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        (self.prefix / "several-nodes.conf").write_text(self.render(), encoding="utf-8")
        user = "user root;" if os.geteuid() == 0 else ""  # workers must write the request-body temp files
        temp = self.prefix / "temp"
        self.config = f"""
{user}
worker_processes 1;
error_log {self.prefix}/logs/error.log warn;
pid {self.prefix}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    access_log {self.prefix}/logs/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {self.prefix}/several-nodes.conf;
}}
"""
        (self.prefix / "nginx.conf").write_text(self.config, encoding="utf-8")
        self.process = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=(self.prefix / "logs" / "stderr.log").open("ab"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.prefix / 'logs' / 'stderr.log').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.1)
        raise RuntimeError("nginx did not listen")

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


class SoapError(Exception):
    """A call that got no SOAP answer (connection error, 502 from the balancer) or a fault."""

    def __init__(self, message: str, status: int | None = None, fault: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.fault = fault


def call(url: str, agency: str, secret: str, operation: str, inner: str = "", timeout: float = 30) -> etree._Element:
    """POST one SOAP 1.1 request with the AuthHeader; the response's body element, or SoapError."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP_ENV}" xmlns:g="{NS}"><s:Header>'
        f"<g:AuthHeader><g:agencyCode>{agency}</g:agencyCode><g:secret>{secret}</g:secret></g:AuthHeader>"
        f"</s:Header><s:Body><g:{operation}>{inner}</g:{operation}></s:Body></s:Envelope>"
    ).encode()
    try:
        response = requests.post(
            url,
            data=body,
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{operation}"'},
            timeout=timeout,
        )
    except requests.RequestException as error:
        raise SoapError(f"{operation}: {type(error).__name__}: {error}") from error
    try:
        root = etree.fromstring(response.content)
    except etree.XMLSyntaxError:
        raise SoapError(
            f"{operation}: HTTP {response.status_code}: {response.content[:200]!r}", response.status_code
        ) from None
    body_element = root.find(f"{{{SOAP_ENV}}}Body")
    assert body_element is not None
    fault = body_element.find(f"{{{SOAP_ENV}}}Fault")
    if fault is not None:
        code = (fault.findtext("faultcode") or "").rsplit(":", 1)[-1]
        raise SoapError(f"{operation}: {code}: {fault.findtext('faultstring')}", response.status_code, code)
    return body_element[0]


def text_of(element: etree._Element, name: str) -> str | None:
    found = element.find(f".//{{{NS}}}{name}")
    return None if found is None else (found.text or "")


def items_of(element: etree._Element) -> list[dict[str, str]]:
    """getPendingDocuments' items as ``{field: text}``."""
    return [
        {etree.QName(child).localname: child.text or "" for child in item}
        for item in element.iter(f"{{{NS}}}PendingItem")
    ]


def document_b64(data: bytes) -> str:
    return f"<g:document>{base64.b64encode(data).decode()}</g:document>"
