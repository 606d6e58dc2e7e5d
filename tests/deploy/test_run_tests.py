"""tools/run-tests picks one interpreter and venv per supported Python and skips absent ones with the reason.

Only ``--dry-run`` is exercised here (the real run installs system packages and runs this suite).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "run-tests"


def dry_run(versions: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_TEST_PYTHONS": versions}
    return subprocess.run([str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=60)


def test_an_absent_version_is_skipped_with_its_reason() -> None:
    result = dry_run("3.11 3.99")
    assert result.returncode == 0, result.stderr
    assert "skip Python 3.99: no python3.99 found" in result.stdout
    if "skip Python 3.11" not in result.stdout:
        assert "Python 3.11: " in result.stdout and " in .venv\n" in result.stdout


def test_no_supported_python_at_all_fails() -> None:
    result = dry_run("3.98 3.99")
    assert result.returncode == 1
    assert "nothing was tested" in result.stderr


def test_each_version_gets_its_own_venv() -> None:
    result = dry_run("3.11 3.13")
    found = [line for line in result.stdout.splitlines() if line.startswith("run-tests: Python ")]
    if len(found) < 2:
        pytest.skip(f"both 3.11 and 3.13 are needed on this machine: {result.stdout.strip()}")
    assert found[0].endswith(" in .venv") and found[1].endswith(" in .venv-3.13")
    assert "python3.11" in found[0] and "python3.13" in found[1]
