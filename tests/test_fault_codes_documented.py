"""Every fault code the gateway can send is in README's fault-code table: the codes are a contract."""

from __future__ import annotations

from gateway.config import REPO_ROOT
from gateway.errors import ALL_ERRORS


def test_every_fault_code_is_documented() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Fault codes", 1)[1].split("\n## ", 1)[0]
    documented = {row.split("`")[1] for row in table.splitlines() if row.startswith("| `")}
    missing = sorted({error.code for error in ALL_ERRORS} - documented)
    assert not missing, f"fault codes missing from README's table: {missing}"
