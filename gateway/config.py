"""Runtime settings, read once from ``GATEWAY_*`` environment variables.

Defaults give a working gateway with no setup: SQLite and blobs under ``./var``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WSDL_DIR = REPO_ROOT / "wsdl"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


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
    public_url: str = ""
    """The endpoint address the served WSDL names; unset = the address the client used (Host)."""
    trusted_proxy: bool = False
    """A proxy in front sets X-Forwarded-Host/-Proto, so the WSDL address may be read from them."""
    metrics_token: str = ""
    """Unset = /metrics answers anyone; set = Bearer token or Basic password required."""
    metrics_agency_labels: bool = False
    """Per-agency queue-depth series on /metrics (they name which agencies have documents waiting)."""
    metrics_cache_seconds: float = 5.0
    """The store gauges are computed at most once per this many seconds per process."""

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'gateway.sqlite3'}")
        if self.blob_dir is None:
            object.__setattr__(self, "blob_dir", self.data_dir / "blobs")

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
            public_url=env.get("GATEWAY_PUBLIC_URL", ""),
            trusted_proxy=_env_flag("GATEWAY_TRUSTED_PROXY"),
            metrics_token=env.get("GATEWAY_METRICS_TOKEN", ""),
            metrics_agency_labels=_env_flag("GATEWAY_METRICS_AGENCY_LABELS"),
            metrics_cache_seconds=float(env.get("GATEWAY_METRICS_CACHE_SECONDS") or 5.0),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
