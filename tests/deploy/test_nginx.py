"""deploy/nginx/edxml-gateway.conf in front of a real gateway: TLS, slow clients, oversize bodies (issues 11.4, 11.5).

The test renders the shipped site file (only its EDIT values change: ports, certificate paths,
upstream), makes a CA and a server certificate for 127.0.0.1 with ``cryptography``, starts
nginx on free ports as a child process, and a gateway (``serve --production``, gevent) behind it
with ``GATEWAY_TRUSTED_PROXY=1`` and no ``GATEWAY_PUBLIC_URL``, as the shipped environment file
suggests. Through TLS: the WSDL naming the https address the client called (scheme from nginx's
X-Forwarded-Proto, host and port from the client's Host), the whole exchange story by stubs
generated from the https WSDL with zeep, PHP SoapClient and Mono (tests/interop clients with
INTEROP_CA_FILE), 200 connections trickling header bytes while a normal call answers within a
second, and a body over client_max_body_size refused by nginx with 413 and the gateway's
Client.TooLarge SOAP fault, never reaching the gateway (no access line, no document, no blob or
temporary file). Skipped with the reason where nginx is not installed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from interop.make_document import letter
from reliability.reliability_support import VPCP, GatewayProcess, envelope, parse_reply, raw_http, split_http
from sqlalchemy import func, select
from support.processes import free_port

from gateway.config import WSDL_DIR, Settings
from gateway.soap.binding import WSDL_LOCATION
from gateway.store.database import Database
from gateway.store.models import Document

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "nginx" / "edxml-gateway.conf"
INTEROP = REPO / "tests" / "interop"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
SLOW_CONNECTIONS = 200
STACK_SECONDS = 600

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (tools/run-tests installs nginx-light)"),
]


@dataclass
class Proxied:
    gateway: GatewayProcess
    https: str
    ca: Path
    tls_port: int
    http_port: int
    tmp: Path

    @property
    def soap(self) -> str:
        return f"{self.https}/soap"


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edxml-gateway test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # Mono's TLS cannot read EC keys
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def render(shipped: str, upstream: int, http_port: int, tls_port: int, cert: Path, key: Path) -> str:
    """The shipped site file with only its EDIT values replaced (and IPv6 listeners dropped)."""
    replacements = [
        (r"server 127\.0\.0\.1:8080;", f"server 127.0.0.1:{upstream};"),
        (r"\n\s*listen \[::\]:\d+[^\n]*", ""),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;"),
        (r"ssl_certificate\s+/etc/ssl/edxml-gateway/fullchain\.pem;", f"ssl_certificate {cert};"),
        (r"ssl_certificate_key\s+/etc/ssl/edxml-gateway/privkey\.pem;", f"ssl_certificate_key {key};"),
    ]
    text = shipped
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        assert count, f"the shipped nginx config no longer has {pattern!r}"
    return text


def nginx_main(tmp: Path, site: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\n"
        "events { worker_connections 2048; }\n"
        f"http {{\n    access_log {tmp / 'access.log'};\n{temp}\n    include {site};\n}}\n"
    )


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"nginx exited: {log.read_text(errors='replace')}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise AssertionError(f"nginx did not listen on {port}: {log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    tmp = tmp_path_factory.mktemp("nginx")
    ca, cert, key = make_certificates(tmp)
    http_port, tls_port = free_port(), free_port()
    https = f"https://127.0.0.1:{tls_port}"
    # As deploy/systemd/edxml-gateway.env advises behind the shipped nginx: the WSDL's address comes
    # from the X-Forwarded-Proto/-Host nginx sets, not from a fixed GATEWAY_PUBLIC_URL (emptied, so
    # none from the calling environment hides what the headers do).
    env = {"GATEWAY_TRUSTED_PROXY": "1", "GATEWAY_PUBLIC_URL": ""}
    gateway = GatewayProcess(tmp / "var", workers=1, env=env)
    gateway.start()
    site = tmp / "site.conf"
    site.write_text(render(SHIPPED.read_text(), gateway.port, http_port, tls_port, cert, key))
    main = tmp / "nginx.conf"
    main.write_text(nginx_main(tmp, site))
    log = tmp / "nginx.out"
    assert NGINX is not None
    with log.open("wb") as out:
        process = subprocess.Popen(
            [NGINX, "-c", str(main), "-p", str(tmp), "-e", str(tmp / "error.log")],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(tls_port, process, tmp / "error.log")
        yield Proxied(gateway, https, ca, tls_port, http_port, tmp)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGQUIT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        gateway.stop()


def get_agencies(proxied: Proxied, timeout: float) -> None:
    secret = proxied.gateway.secrets[VPCP]
    response = requests.post(
        proxied.soap,
        data=envelope("getAgencies", "", VPCP, secret),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"getAgencies"'},
        verify=str(proxied.ca),
        timeout=timeout,
    )
    reply = parse_reply(response.status_code, response.content)
    assert reply.fault_code is None, reply.fault_string
    assert len(reply.findall("code")) >= 100


def test_the_shipped_body_limit_matches_the_gateway() -> None:
    [limit] = re.findall(r"^\s*client_max_body_size (\d+);", SHIPPED.read_text(), re.M)
    assert int(limit) == Settings().max_request_bytes


def wsdl_address(text: str) -> str:
    """The WSDL's soap:address, after checking the rest is the published WSDL unchanged."""
    address = re.search(r':address location="([^"]+)"', text)
    assert address, text[:500]
    published = (WSDL_DIR / "edxml-gateway.wsdl").read_text(encoding="utf-8")
    assert text == published.replace(WSDL_LOCATION, address[1])
    return address[1]


def test_plain_http_is_redirected_and_tls_serves_the_wsdl(proxied: Proxied) -> None:
    plain = requests.get(f"http://127.0.0.1:{proxied.http_port}/soap?wsdl", allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
    served = requests.get(f"{proxied.soap}?wsdl", verify=str(proxied.ca), timeout=30)
    assert served.status_code == 200
    assert wsdl_address(served.text) == proxied.soap


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "gateway.example.gov.vn"])
def test_the_wsdl_names_the_https_address_the_client_called(proxied: Proxied, host: str) -> None:
    """Scheme from nginx's X-Forwarded-Proto, host and port from the client's Host (X-Forwarded-Host).

    The client's own X-Forwarded-* headers are replaced by nginx's, so they change nothing.
    """
    host = host.format(port=proxied.tls_port)
    headers = {"Host": host, "X-Forwarded-Proto": "http", "X-Forwarded-Host": "attacker.example:8443"}
    served = requests.get(f"{proxied.soap}?wsdl", headers=headers, verify=str(proxied.ca), timeout=30)
    assert served.status_code == 200, served.text[:500]
    assert wsdl_address(served.text) == f"https://{host}/soap"


def test_the_gateway_alone_would_name_plain_http(proxied: Proxied) -> None:
    """The https above comes from nginx's headers: asked directly, the gateway names its own http address."""
    direct = requests.get(f"{proxied.gateway.url}?wsdl", timeout=30)
    assert direct.status_code == 200
    assert wsdl_address(direct.text) == proxied.gateway.url


@pytest.mark.timeout(STACK_SECONDS + 120)
@pytest.mark.parametrize("stack", ["zeep", "php", "mono"])
def test_generated_clients_run_the_story_through_tls(proxied: Proxied, stack: str, tmp_path: Path) -> None:
    document = tmp_path / "letter.edxml"
    document.write_bytes(letter(f"{time.time_ns()}"))
    env = {
        **os.environ,
        "INTEROP_CA_FILE": str(proxied.ca),
        "INTEROP_ENDPOINT": proxied.soap,
        "INTEROP_PYTHON": sys.executable,
    }
    proc = subprocess.run(
        [
            *(sys.executable, str(INTEROP / "run.py"), "--wsdl", f"{proxied.soap}?wsdl", "--stacks", stack, "-v"),
            *("--credentials", str(proxied.gateway.data_dir / "demo-credentials.json"), "--document", str(document)),
            *("--build-dir", str(tmp_path / "build"), "--timeout", str(STACK_SECONDS)),
        ],
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=STACK_SECONDS + 60,
    )
    out = proc.stdout + proc.stderr
    if re.search(rf"^interop: {stack}\s+SKIP", out, re.M):
        pytest.skip(next((line.strip() for line in out.splitlines() if "SKIP:" in line), f"{stack} not installed"))
    assert proc.returncode == 0 and "story passed" in out, out[-6000:]


def test_trickling_connections_do_not_stop_a_normal_call(proxied: Proxied) -> None:
    context = ssl.create_default_context(cafile=str(proxied.ca))
    slow: list[ssl.SSLSocket] = []
    try:
        for _ in range(SLOW_CONNECTIONS):
            raw = socket.create_connection(("127.0.0.1", proxied.tls_port), timeout=10)
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
            sock.sendall(b"POST /soap HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(sock)
        held_until = time.monotonic() + 5
        while time.monotonic() < held_until:
            get_agencies(proxied, timeout=1.0)
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"X")
            time.sleep(0.5)
    finally:
        for sock in slow:
            sock.close()
    get_agencies(proxied, timeout=1.0)


def count_documents(proxied: Proxied) -> int:
    db = Database(f"sqlite:///{proxied.gateway.data_dir / 'gateway.sqlite3'}")
    try:
        with db.transaction(readonly=True) as session:
            return int(session.scalar(select(func.count()).select_from(Document)) or 0)
    finally:
        db.dispose()


def stored_files(proxied: Proxied) -> set[Path]:
    """Every file of the blob store, its temporary area (blobs/tmp) included."""
    return {path for path in proxied.gateway.blob_dir.rglob("*") if path.is_file()}


def access_lines(log: Path, offset: int) -> list[str]:
    """The gateway's access lines (gateway/accesslog.py) written to its log after ``offset``."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if re.search(r"\boperation=\S+ fault=\S+ status=\d{3} ", line)]


def oversize_request(limit: int) -> tuple[bytes, bytes]:
    """Headers announcing one byte over the limit, and the first 64 KiB of that body."""
    head = (
        b"POST /soap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\n"
        + f'SOAPAction: "sendDocument"\r\nContent-Length: {limit + 1}\r\n\r\n'.encode()
    )
    return head, b"<" * 65536


def test_an_oversize_body_is_refused_by_the_proxy_with_the_gateways_fault(proxied: Proxied) -> None:
    """nginx answers 413 with the gateway's Client.TooLarge fault; the gateway never sees the request."""
    documents, files = count_documents(proxied), stored_files(proxied)
    gateway_log, nginx_log = proxied.gateway.log_path, proxied.tmp / "access.log"
    gateway_offset, nginx_offset = gateway_log.stat().st_size, nginx_log.stat().st_size
    limit = Settings().max_request_bytes
    head, body = oversize_request(limit)
    context = ssl.create_default_context(cafile=str(proxied.ca))
    raw = socket.create_connection(("127.0.0.1", proxied.tls_port), timeout=30)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        with contextlib.suppress(OSError):
            sock.sendall(head + body)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    status, content = split_http(answer)
    headers = answer.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    assert status == 413 and "\r\ncontent-type: text/xml; charset=utf-8" in headers, answer[:500]
    fault = parse_reply(status, content)
    assert fault.fault_code == "Client.TooLarge" and fault.fault_string, content[:500]

    # nginx logged it as its own 413; nothing was stored, not even a temporary blob file.
    assert re.search(r'"POST /soap HTTP/1\.1" 413 ', nginx_log.read_bytes()[nginx_offset:].decode(errors="replace"))
    assert count_documents(proxied) == documents
    assert stored_files(proxied) == files
    # The gateway never saw the request: the next call is the only access line it writes.
    get_agencies(proxied, timeout=5)
    deadline = time.monotonic() + 10
    while not (lines := access_lines(gateway_log, gateway_offset)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(lines) == 1 and "operation=getAgencies " in lines[0], lines

    # Without nginx the gateway answers the same request with the same status and fault code.
    direct_status, direct_content = split_http(raw_http("127.0.0.1", proxied.gateway.port, head, body))
    assert parse_reply(direct_status, direct_content).fault_code == "Client.TooLarge"
    assert direct_status == status
