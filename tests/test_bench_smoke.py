"""``tools/bench.py --quick`` still runs end to end, so the published figures stay reproducible.

Only completion is checked (0 errors, every figure printed and saved), never speed: the smoke run
is seconds long on a shared machine, and its numbers mean nothing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

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
    "peak RSS worker",
    "parse+validate only, docs/s",
    "ceiling parse+validate+store, docs/s",
    "ceiling per document, mean ms: parse",
    "ratio sends/s / ceiling",
    "errors",
]


@pytest.mark.slow
def test_quick_bench_on_sqlite_completes_without_errors(tmp_path: Path) -> None:
    figures = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench.py"), "--quick", "--backends", "sqlite", "--json", str(figures)],
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
    for key in ("sends_per_s", "fetch_ack_per_s", "parse_validate_per_s", "ceiling_per_s", "ratio"):
        assert result[key] > 0 and math.isfinite(result[key]), key
    assert result["send"]["operations"]["sendDocument"]["count"] > 0
    for operation in ("getPendingDocuments", "getDocument", "confirmReceived", "fetch+ack"):
        figures_for = result["fetch"]["operations"][operation]
        assert figures_for["count"] > 0 and figures_for["p99_ms"] >= figures_for["p50_ms"] > 0, operation
    assert len(result["worker_rss_mib"]) == report["settings"]["workers"]
    assert all(rss["peak"] > 0 for rss in result["worker_rss_mib"].values())
    assert report["machine"]["cpu"] and report["machine"]["cores"]
