"""Runtime settings, read once from ``GATEWAY_*`` environment variables.

Defaults give a working gateway with no setup: SQLite and blobs under ``./var``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WSDL_DIR = REPO_ROOT / "wsdl"
INSTANCE_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,35}")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


@dataclass(frozen=True)
class Settings:
    """Everything an operator can tune; ``from_env`` maps each field to ``GATEWAY_<FIELD>``."""

    data_dir: Path = field(default_factory=lambda: Path("var"))
    database_url: str = ""
    blob_dir: Path | None = None
    max_document_bytes: int = 64 * 1024 * 1024
    lease_seconds: int = 300
    max_pending_items: int = 100
    ack_overdue_hours: int = 24
    trusted_certs: Path | None = None
    operator_password: str = ""
    # Network of gateways (docs/federation.md): this instance, its tier, and its link upstream.
    instance_id: str = "local"
    role: str = "national"
    upstream_url: str = ""
    upstream_secret: str = ""
    relay_interval: float = 5.0
    relay_max_attempts: int = 8
    relay_backoff_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'gateway.sqlite3'}")
        if self.blob_dir is None:
            object.__setattr__(self, "blob_dir", self.data_dir / "blobs")
        if not INSTANCE_ID_PATTERN.fullmatch(self.instance_id):
            raise ValueError(
                f"GATEWAY_INSTANCE_ID '{self.instance_id}' must be 1-35 letters, digits, '-', '_' or '.'"
            )
        if self.role not in ("national", "provincial"):
            raise ValueError(f"GATEWAY_ROLE '{self.role}' must be 'national' or 'provincial'")

    @property
    def max_request_bytes(self) -> int:
        """Largest SOAP body accepted: the base64 of the largest document plus envelope headroom."""
        return self.max_document_bytes * 4 // 3 + 64 * 1024

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = dict(
            data_dir=Path(env.get("GATEWAY_DATA_DIR", "var")),
            database_url=env.get("GATEWAY_DATABASE_URL", ""),
            blob_dir=Path(env["GATEWAY_BLOB_DIR"]) if env.get("GATEWAY_BLOB_DIR") else None,
            max_document_bytes=_env_int("GATEWAY_MAX_DOCUMENT_BYTES", 64 * 1024 * 1024),
            lease_seconds=_env_int("GATEWAY_LEASE_SECONDS", 300),
            max_pending_items=_env_int("GATEWAY_MAX_PENDING_ITEMS", 100),
            ack_overdue_hours=_env_int("GATEWAY_ACK_OVERDUE_HOURS", 24),
            trusted_certs=Path(env["GATEWAY_TRUSTED_CERTS"]) if env.get("GATEWAY_TRUSTED_CERTS") else None,
            operator_password=env.get("GATEWAY_OPERATOR_PASSWORD", ""),
            instance_id=env.get("GATEWAY_INSTANCE_ID") or "local",
            role=env.get("GATEWAY_ROLE") or "national",
            upstream_url=env.get("GATEWAY_UPSTREAM_URL", ""),
            upstream_secret=env.get("GATEWAY_UPSTREAM_SECRET", ""),
            relay_interval=_env_float("GATEWAY_RELAY_INTERVAL", 5.0),
            relay_max_attempts=_env_int("GATEWAY_RELAY_MAX_ATTEMPTS", 8),
            relay_backoff_seconds=_env_float("GATEWAY_RELAY_BACKOFF_SECONDS", 30.0),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
