"""A bad ``GATEWAY_*`` variable is a usage error: one line naming it and what it expects, exit status 2."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import Result

from gateway.cli import serve as serve_module

Invoke = Callable[..., Result]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("GATEWAY_LEASE_SECONDS", "abc", "error: GATEWAY_LEASE_SECONDS must be an integer >= 1, not 'abc'"),
        ("GATEWAY_MAX_PENDING_ITEMS", "0", "error: GATEWAY_MAX_PENDING_ITEMS must be an integer >= 1, not 0"),
        ("GATEWAY_ACK_OVERDUE_HOURS", "-2", "error: GATEWAY_ACK_OVERDUE_HOURS must be an integer >= 0, not -2"),
    ],
)
def test_bad_setting_is_one_line_and_exit_2(
    upgraded_cli: Invoke, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setattr(serve_module, "_serve_development", lambda *args: pytest.fail("served despite bad settings"))
    for command in (("agencies", "list"), ("serve", "--port", "0"), ("audit", "verify")):
        result = upgraded_cli(*command, env={variable: value})
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [expected]
        assert result.stdout == ""


def test_help_needs_no_valid_settings(cli: Invoke) -> None:
    result = cli("agencies", "--help", env={"GATEWAY_LEASE_SECONDS": "abc"})
    assert result.exit_code == 0 and "The agency directory." in result.stdout
