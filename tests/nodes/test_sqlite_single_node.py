"""SQLite serves one node: a second ``serve`` on the same SQLite store is refused with one clear line.

The serving process holds ``fcntl.flock`` on ``gateway.sqlite3.serve-lock`` for its lifetime; its
gunicorn workers share it, a crash releases it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from nodes_support import Node, prepare_store
from support.processes import free_port, gateway_command

from gateway.store.database import SingleNodeOnly, claim_single_node


def _second_serve(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gateway_command(), "--data-dir", str(data_dir), "serve", "--port", str(free_port()), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )


@pytest.mark.slow
def test_a_second_node_on_the_same_sqlite_store_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    prepare_store(f"sqlite:///{data_dir / 'gateway.sqlite3'}", ["000.00.00.G22"])
    first = Node("first", data_dir, {}, workers=2).start()
    try:
        first.wait_healthy()
        for extra in ((), ("--workers", "2")):
            refused = _second_serve(data_dir, *extra)
            assert refused.returncode != 0
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1, refused.stderr
            assert "SQLite supports one node" in lines[0] and "PostgreSQL" in lines[0]
            assert str(data_dir / "gateway.sqlite3.serve-lock") in lines[0]
        first.wait_healthy()  # the refused attempts disturbed nothing
    finally:
        first.kill()  # a crash of the whole group releases the lock
    second = Node("second", data_dir, {}, workers=1).start()
    try:
        second.wait_healthy()
    finally:
        second.stop()


def test_the_claim_is_exclusive_per_sqlite_file_and_a_no_op_elsewhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'gateway.sqlite3'}"
    held = claim_single_node(url)
    assert held is not None
    with pytest.raises(SingleNodeOnly, match="SQLite supports one node"):
        claim_single_node(url)
    other = claim_single_node(f"sqlite:///{tmp_path / 'b' / 'gateway.sqlite3'}")
    assert other is not None, "another store is another node"
    assert claim_single_node("sqlite://") is None
    assert claim_single_node("postgresql+psycopg://gw@127.0.0.1/gateway") is None
    os.close(held)
    os.close(other)
    os.close(claim_single_node(url) or -1)  # released with its descriptor
