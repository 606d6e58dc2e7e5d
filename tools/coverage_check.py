"""Fail when any module of gateway/ is under the coverage floor, and name each one.

Run after the test suite has written its coverage data (``tools/run-tests`` does both)::

    .venv/bin/python tools/coverage_check.py [--data-file .coverage] [--minimum 90]

A module's figure is coverage.py's own with branch measurement on: executed statements plus
taken branch directions over all statements and branch directions. A total hides a module nobody
tests behind others tested twice, hence one floor per module. Modules the tests never imported
count, at 0%. The floor defaults to ``GATEWAY_COVERAGE_MIN`` or 90.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import coverage

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MINIMUM = float(os.environ.get("GATEWAY_COVERAGE_MIN") or 90)


@dataclass(frozen=True)
class ModuleFigure:
    """One module's coverage as coverage.py counts it."""

    path: str
    percent: float
    statements: int
    missing_statements: int
    branches: int
    missing_branches: int


def module_figures(data_file: Path) -> list[ModuleFigure]:
    """Per-module figures of gateway/ from a coverage data file (combined first if parallel files exist)."""
    cov = coverage.Coverage(data_file=str(data_file), config_file=str(REPO / "pyproject.toml"))
    cov.load()
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "coverage.json"
        cov.json_report(outfile=str(report), include=[str(REPO / "gateway" / "*")], ignore_errors=True)
        files = json.loads(report.read_text(encoding="utf-8"))["files"]
    figures = []
    for path, entry in sorted(files.items()):
        summary = entry["summary"]
        figures.append(
            ModuleFigure(
                path=os.path.relpath(path, REPO) if os.path.isabs(path) else path,
                percent=float(summary["percent_covered"]),
                statements=summary["num_statements"],
                missing_statements=summary["missing_lines"],
                branches=summary.get("num_branches", 0),
                missing_branches=summary.get("missing_branches", 0),
            )
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-file", type=Path, default=Path(os.environ.get("COVERAGE_FILE", REPO / ".coverage")))
    parser.add_argument("--minimum", type=float, default=DEFAULT_MINIMUM, help="floor in percent (default %(default)s)")
    args = parser.parse_args(argv)
    if not args.data_file.is_file():
        print(f"coverage_check: no coverage data at {args.data_file}; run the tests with --cov first", file=sys.stderr)
        return 2
    figures = module_figures(args.data_file)
    if not figures:
        print("coverage_check: the data covers no module of gateway/", file=sys.stderr)
        return 2
    below = [f for f in figures if f.percent < args.minimum]
    if not below:
        print(f"coverage_check: all {len(figures)} modules of gateway/ at or above {args.minimum:g}%")
        return 0
    print(f"coverage_check: {len(below)} of {len(figures)} modules of gateway/ under {args.minimum:g}%:")
    width = max(len(f.path) for f in below)
    for figure in sorted(below, key=lambda f: f.percent):
        print(
            f"  {figure.path:<{width}}  {figure.percent:5.1f}%  "
            f"({figure.missing_statements}/{figure.statements} statements and "
            f"{figure.missing_branches}/{figure.branches} branch directions not run)"
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
