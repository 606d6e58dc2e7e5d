"""A run as rows (CSV, tables): the same numbers whatever shows them."""

from __future__ import annotations

import json
from typing import TextIO

from gateway import csvout
from gateway.certification.engine import RunView

CSV_COLUMNS = ("run_id", "agency", "grade", "check", "title", "state", "deadline", "decided_at", "evidence")


def check_rows(run: RunView) -> list[dict[str, str]]:
    """One row per check, evidence as compact JSON."""
    return [
        {
            "run_id": run.run_id,
            "agency": run.agency_code,
            "grade": run.grade,
            "check": check.key,
            "title": check.title,
            "state": check.state,
            "deadline": check.deadline.isoformat(timespec="seconds"),
            "decided_at": check.decided_at.isoformat(timespec="seconds") if check.decided_at else "",
            "evidence": json.dumps(check.evidence, ensure_ascii=False, sort_keys=True),
        }
        for check in run.checks
    ]


def write_csv(run: RunView, out: TextIO) -> None:
    """The run's checks as CSV (UTF-8, a header row; text cells safe for spreadsheets: gateway.csvout)."""
    writer = csvout.writer(out)
    writer.writerow(CSV_COLUMNS)
    writer.writerows([row[column] for column in CSV_COLUMNS] for row in check_rows(run))
