"""What one send costs the worker at each layer around it, against lxml's parse and validation alone.

``tools/bench.py`` compares sends under load with a ceiling that has no HTTP and no gunicorn. This
separates where a send's CPU goes beyond that ceiling (docs/performance.md, "The same code on an AMD
EPYC machine"), on SQLite, with bench.py's 1.8 MB request, one call at a time:

- ``lxml``: parse + XSD validation of the same edXML file in this process (the ceiling's first part);
- ``in-process``: the gateway's WSGI application called directly (no HTTP, no gunicorn);
- ``http, 1 worker`` / ``http, N workers``: ``serve --production`` as bench.py starts it, one client
  calling in turn on a new connection per call; the worker CPU is every worker's, so wake-ups of
  idle workers count.

    .venv/bin/python tools/bench_layers.py [--sends 200] [--repeats 3] [--workers 4]

Figures are CPU milliseconds per call; compare them within one run, not across machines.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench  # a sibling script: run as one, this directory is first on sys.path
import bench_app
from lxml import etree

from gateway.config import Settings


def _per_call(call: Callable[[int], None], first: int, count: int) -> float:
    """CPU milliseconds of this process per call of ``call(n)`` for ``count`` numbers from ``first``."""
    before = bench._cpu_seconds()
    for n in range(first, first + count):
        call(n)
    return (bench._cpu_seconds() - before) / count * 1000


def lxml_and_in_process(template: bench.Template, scratch: Path, sends: int, repeats: int) -> dict[str, list[float]]:
    """lxml's parse + validation, and the WSGI application called in this process, alternated."""
    settings = Settings.from_env({}, data_dir=scratch)
    secret = {e["agency"]: e["secret"] for e in bench_app.prepare(settings, [bench.SENDER], 0)}[bench.SENDER]
    app = bench_app.create_app(settings)
    schema = etree.XMLSchema(etree.parse(str(bench.XSD)))
    parser = etree.XMLParser(resolve_entities=False, no_network=True)

    def validate(n: int) -> None:
        if not schema.validate(etree.fromstring(template.document(n), parser)):
            raise RuntimeError(f"document {n} is invalid: {schema.error_log}")

    head, tail = bench.send_envelope_parts(secret)

    def send(n: int) -> None:
        body = b"".join((head, *template.document_b64_parts(n), tail))  # as a client joins it: counted here
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/soap",
            "QUERY_STRING": "",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "text/xml; charset=utf-8",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_SOAPACTION": '"sendDocument"',
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status: list[str] = []
        answer = b"".join(app(environ, lambda line, headers, exc_info=None: status.append(line)))
        if not status[0].startswith("200") or not bench._DOCUMENT_ID.search(answer):
            raise RuntimeError(f"document {n} was not accepted: {status[0]} {answer[:300]!r}")

    figures: dict[str, list[float]] = {"lxml": [], "in-process": []}
    _per_call(send, 1, 20)  # warm-up: the schema, the pools, the first blobs
    for repeat in range(repeats):
        base = (repeat + 1) * 1_000_000
        for name in ("lxml", "in-process") if repeat % 2 == 0 else ("in-process", "lxml"):  # ABBA, as below
            figures[name].append(_per_call(validate if name == "lxml" else send, base, sends))
    return figures


def over_http(template: bench.Template, scratch: Path, workers: int, sends: int) -> tuple[float, float]:
    """(worker CPU ms per send, worker wake-ups per send) with ``workers`` workers and one client in turn."""
    scratch.mkdir(parents=True)
    gateway = bench.GatewayProcess(scratch / "data", None, workers)
    try:
        gateway.wait_ready()
        secret = gateway.secrets()[bench.SENDER]
        processes = gateway.worker_processes()
        result = bench.ClientResult()
        caller = bench.SoapCaller(gateway.port, result)
        around = bench.send_envelope_parts(secret)

        def wake_ups() -> int:
            return sum(p.num_ctx_switches().voluntary for p in processes)

        for n in range(1, 21):
            bench.send_document(caller, around, template, n)
        cpu, woken = bench._tree_cpu(processes), wake_ups()
        for n in range(1_000, 1_000 + sends):
            bench.send_document(caller, around, template, n)
        cpu, woken = bench._tree_cpu(processes) - cpu, wake_ups() - woken
        if result.errors:
            raise RuntimeError(f"{result.errors} sends failed: {result.error_samples[:3]}")
        return cpu / sends * 1000, woken / sends
    finally:
        gateway.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=200, help="calls per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per layer")
    parser.add_argument("--workers", type=int, default=4, help="workers of the last layer")
    args = parser.parse_args(argv)
    template = bench.Template.build(bench.RECIPIENTS[0], os.urandom(bench.ATTACHMENT_BYTES))
    print(f"Machine: {bench.machine()}")
    with tempfile.TemporaryDirectory(prefix="edxml-layers-") as scratch:
        root = Path(scratch)
        figures = lxml_and_in_process(template, root / "in-process", args.sends, args.repeats)
        http: dict[int, list[tuple[float, float]]] = {1: [], args.workers: []}
        for repeat in range(args.repeats):
            order = list(http) if repeat % 2 == 0 else list(http)[::-1]  # ABBA: the VM's drift weighs on both
            for workers in order:
                http[workers].append(over_http(template, root / f"http-{workers}-{repeat}", workers, args.sends))
    print(f"{'layer':24s} CPU ms per call, each measurement")
    for name, values in figures.items():
        print(f"{name:24s} " + "  ".join(f"{v:.2f}" for v in values))
    for workers, measured in http.items():
        label = f"http, {workers} worker{'s' if workers > 1 else ''}"
        print(f"{label:24s} " + "  ".join(f"{cpu:.2f}" for cpu, _ in measured))
        print(f"{'  wake-ups per send':24s} " + "  ".join(f"{woken:.1f}" for _, woken in measured))
    ratios = [send / lxml for send, lxml in zip(figures["in-process"], figures["lxml"], strict=True)]
    print(f"{'in-process ÷ lxml':24s} " + "  ".join(f"{r:.2f}" for r in ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
