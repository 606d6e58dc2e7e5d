"""``tools/bench.py --quick`` still runs end to end, so the published figures stay reproducible.

Only completion is checked (0 errors, every figure printed and saved), never speed: the smoke run
is seconds long on a shared machine, and its numbers mean nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]

PRINTED = [
    "Machine:",
    "Document:",
    "== sqlite ==",
    "sendDocument",
    "getPendingDocuments",
    "getDocument",
    "confirmReceived",
    "fetch+ack ",
    "sends/s",
    "fetch+ack/s",
    "ratio receive / send",
    "emptyPoll",
    "bare ",
    "empty polls/s",
    "bare calls/s",
    "ratio polls / bare",
    "peak RSS worker",
    "parse+validate only, docs/s",
    "ceiling parse+validate+store, docs/s",
    "ceiling per document, mean ms: parse",
    "ratio sends/s / ceiling",
    "errors",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "fetch", "mode"),
    [
        ((), "getDocuments", "getDocuments per batch, confirmReceivedItems per batch"),
        (("--per-item-fetch",), "getDocument", "getDocument per item, confirmReceivedItems per batch"),
    ],
    ids=["batches", "per item"],
)
def test_quick_bench_on_sqlite_completes_without_errors(
    tmp_path: Path, options: tuple[str, ...], fetch: str, mode: str
) -> None:
    figures = tmp_path / "bench.json"
    bench = [sys.executable, str(REPO / "tools" / "bench.py"), "--quick", "--backends", "sqlite", *options]
    run = subprocess.run(
        [*bench, "--json", str(figures)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for label in PRINTED:
        assert label in run.stdout, f"{label!r} missing from the report:\n{run.stdout}"

    report = json.loads(figures.read_text(encoding="utf-8"))
    (result,) = report["backends"]
    assert result["backend"] == "sqlite"
    assert result["errors"] == 0, result["error_samples"]
    keys = ("sends_per_s", "fetch_ack_per_s", "parse_validate_per_s", "ceiling_per_s", "ratio", "receive_ratio")
    for key in (*keys, "polls_per_s", "bare_per_s", "poll_ratio"):
        assert result[key] > 0 and math.isfinite(result[key]), key
    assert result["send"]["operations"]["sendDocument"]["count"] > 0
    for operation in ("getPendingDocuments", fetch, "confirmReceivedItems", "fetch+ack"):
        figures_for = result["fetch"]["operations"][operation]
        assert figures_for["count"] > 0 and figures_for["p99_ms"] >= figures_for["p50_ms"] > 0, operation
    assert result["receive_mode"] == mode
    for phase, operation in (("poll", "emptyPoll"), ("bare", "bare")):
        assert result[phase]["operations"][operation]["count"] > 0, operation
    assert len(result["worker_rss_mib"]) == report["settings"]["workers"]
    assert all(rss["peak"] > 0 for rss in result["worker_rss_mib"].values())
    assert report["machine"]["cpu"] and report["machine"]["cores"]


def test_the_layer_bench_measures_every_layer_without_errors() -> None:
    """tools/bench_layers.py, which docs/performance.md quotes, still runs: every layer printed with
    one positive figure per measurement (a send that failed raises and exits non-zero)."""
    run = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench_layers.py"), "--sends", "3", "--repeats", "2", "--workers", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [(line[:24].strip(), line[24:].split()) for line in run.stdout.splitlines()[2:]]
    labels = ["lxml", "in-process", "http, 1 worker", "wake-ups per send", "http, 2 workers", "wake-ups per send"]
    assert [label for label, _ in rows] == [*labels, "in-process ÷ lxml"], run.stdout
    for label, values in rows:
        assert len(values) == 2 and all(float(v) > 0 for v in values), (label, run.stdout)


def _bench_module() -> ModuleType:
    """tools/bench.py as a module (tools/ is not a package; dataclasses need it in sys.modules)."""
    if "edxml_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("edxml_bench", REPO / "tools" / "bench.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["edxml_bench"] = module
        spec.loader.exec_module(module)
    return sys.modules["edxml_bench"]


def _die(*, start_at: float, out: object) -> None:
    raise SystemExit(3)


def test_a_client_that_dies_stops_the_phase_instead_of_hanging_it() -> None:
    bench = _bench_module()
    with pytest.raises(RuntimeError, match=r"exit codes \[3\]"):
        bench.run_phase([(_die, (), {})], [], lead=0.0)


def test_rounds_are_summarised_per_backend_by_their_median(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench_module()
    results = [
        {"backend": "sqlite", "ratio": 0.95},
        {"backend": "postgresql", "ratio": 0.93},
        {"backend": "sqlite", "ratio": 0.81},
        {"backend": "postgresql", "ratio": 0.71},
        {"backend": "sqlite", "ratio": 0.92},
        {"backend": "postgresql", "ratio": 0.88},
    ]
    bench.print_round_summary(results)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == "sqlite      0.95 0.81 0.92   min 0.81, median 0.92: meets the 0.9 target (median of rounds)"
    assert lines[-1] == "postgresql  0.93 0.71 0.88   min 0.71, median 0.88: MISSES the 0.9 target (median of rounds)"


def test_a_run_cut_short_keeps_and_prints_what_it_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each backend's round is saved as it ends and each round's scratch removed; a failure later
    prints the rounds measured before it and still raises."""
    bench = _bench_module()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(bench.tempfile, "mkdtemp", lambda prefix: str(scratch))
    rounds: list[Path] = []
    printed: list[list[dict[str, object]]] = []

    def backend(name: str, templates: object, options: object, round_scratch: Path) -> dict[str, object]:
        rounds.append(round_scratch)
        (round_scratch / f"{name}.edxml").write_bytes(b"stored documents")
        if len(rounds) == 3:
            raise RuntimeError("disk I/O error")
        return {"backend": name, "errors": 0}

    monkeypatch.setattr(bench, "bench_backend", backend)
    monkeypatch.setattr(bench, "print_report", lambda report: printed.append(list(report["backends"])))
    figures = tmp_path / "bench.json"
    with pytest.raises(RuntimeError, match="disk I/O error"):
        bench.main(["--quick", "--backends", "sqlite,postgresql", "--rounds", "2", "--json", str(figures)])

    measured = [{"round": 1, "backend": "sqlite", "errors": 0}, {"round": 1, "backend": "postgresql", "errors": 0}]
    assert json.loads(figures.read_text(encoding="utf-8"))["backends"] == measured
    assert printed == [measured]
    assert "the run stopped early" in capsys.readouterr().err
    assert rounds[0] == rounds[1] and not rounds[0].exists(), "round 1's scratch went when round 1 ended"
    assert not scratch.exists()


def test_a_round_that_could_fill_the_disk_is_not_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk stops a PostgreSQL server on it: before each backend-round the bench compares the
    free space with what a round took so far in this run (an estimate before the first), and stops
    with what was measured rather than start one that would leave under SPACE_LEFT."""
    bench = _bench_module()
    make_scratch = tempfile.mkdtemp
    monkeypatch.setattr(bench.tempfile, "mkdtemp", lambda prefix: make_scratch(prefix=prefix, dir=tmp_path))
    gb = 10**9
    free = [bench.SPACE_LEFT + 12 * gb]
    monkeypatch.setattr(bench.shutil, "disk_usage", lambda path: SimpleNamespace(free=free[0]))
    ran: list[str] = []

    def backend(name: str, templates: object, options: object, round_scratch: Path) -> dict[str, object]:
        ran.append(name)
        free[0] -= 5 * gb  # what this round stored
        return {"backend": name, "errors": 0}

    monkeypatch.setattr(bench, "bench_backend", backend)
    monkeypatch.setattr(bench, "print_report", lambda report: None)
    left = f"{(bench.SPACE_LEFT + 2 * gb) / 1e9:.1f} GB free"
    with pytest.raises(SystemExit, match=rf"not starting sqlite \(round 2 of 2\): {re.escape(left)} .* about 5\.0 GB"):
        bench.main(["--quick", "--backends", "sqlite,postgresql", "--rounds", "2"])
    assert ran == ["sqlite", "postgresql"]
    assert "the run stopped early" in capsys.readouterr().err

    free[0] = bench.SPACE_LEFT + gb  # under the first estimate: 800 documents per phase second, 2 s phases
    ran.clear()
    with pytest.raises(SystemExit, match=r"not starting sqlite \(round 1 of 1\): .* about 2\.\d GB"):
        bench.main(["--quick", "--backends", "sqlite"])
    assert ran == []


def _answering(answer: bytes, piece: int) -> tuple[socket.socket, threading.Thread]:
    """A one-connection server that reads a request's headers, then sends ``answer`` ``piece`` bytes at a time."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            with contextlib.suppress(OSError):  # the client may stop reading first, as it should
                for start in range(0, len(answer), piece):
                    connection.sendall(answer[start : start + piece])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("piece", [7, 1 << 20], ids=["trickled", "in large pieces"])
def test_the_bench_client_reads_answers_whole_into_its_buffer(piece: int) -> None:
    bench = _bench_module()
    body = os.urandom(5 * 1024 * 1024) if piece > 7 else b"<gw:documentId>42</gw:documentId>"  # past the buffer
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nCONTENT-LENGTH:  %d\r\n\r\n" % len(body)
    listener, thread = _answering(head + body + b"never read", piece)
    result = bench.ClientResult()
    with listener:
        answer = bench.SoapCaller(listener.getsockname()[1], result).call("getDocument", b"<x/>")
    thread.join()
    assert result.errors == 0
    assert answer is not None and bytes(answer) == body


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 9\r\n\r\n<Fault/>!", "HTTP 500: b'<Fault/>!'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "the response ended 95 bytes short"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "without Content-Length"),
        (b"HTTP/1.1 200 OK\r\n", "closed the connection before answering"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000, "no end of the response headers"),
    ],
)
def test_the_bench_client_records_what_is_wrong_with_an_answer(answer: bytes, error: str) -> None:
    bench = _bench_module()
    listener, thread = _answering(answer, 4096)
    result = bench.ClientResult()
    with listener:
        assert bench.SoapCaller(listener.getsockname()[1], result).call("getDocument", b"<x/>") is None
    thread.join()
    assert result.errors == 1
    assert error in result.error_samples[0]


@pytest.mark.parametrize("operation", ["confirmReceivedItems", "getDocuments"])
def test_the_batch_operations_are_found_in_a_wsdl_that_has_them(operation: str) -> None:
    bench = _bench_module()
    schema = "http://www.w3.org/2001/XMLSchema"
    with_batch = f"""<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"><types><xs:schema xmlns:xs="{schema}">
      <xs:complexType name="stringArray"><xs:sequence>
        <xs:element name="string" type="xs:string" maxOccurs="unbounded"/></xs:sequence></xs:complexType>
      <xs:complexType name="{operation}"><xs:sequence>
        <xs:element name="itemIds" type="tns:stringArray"/></xs:sequence></xs:complexType>
    </xs:schema></types></definitions>""".encode()
    assert bench.batch_shape(with_batch, operation) == ("itemIds", "string")
    assert bench.batch_shape(with_batch, "getSomethingElse") is None
    published = (REPO / "wsdl" / "edxml-gateway.wsdl").read_bytes()
    assert bench.batch_shape(published, operation) == ("itemIds", "string")


def test_the_simulated_national_directory_has_three_levels_of_valid_codes_below_the_national_office() -> None:
    spec = importlib.util.spec_from_file_location("edxml_sim_national", REPO / "tools" / "sim_national.py")
    assert spec and spec.loader
    sim = importlib.util.module_from_spec(spec)
    sys.modules["edxml_sim_national"] = sim
    spec.loader.exec_module(sim)
    units = sim.national_directory(10_000)
    by_code = {unit.code: unit for unit in units}
    assert len(by_code) == len(units) >= 10_000
    assert by_code[sim.NATIONAL].level == 1
    strict = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")
    assert all(strict.match(code) for code in by_code)
    assert {unit.level for unit in units} == {1, 2, 3}
    for unit in units:
        if unit.level == 1:
            assert unit.parent is None
            continue
        parent = by_code[unit.parent]
        assert parent.level == unit.level - 1
        kept = unit.code.split(".")[-unit.level + 1 :] if unit.level > 1 else []
        assert parent.code.split(".")[-len(kept) :] == kept, (unit.code, parent.code)
