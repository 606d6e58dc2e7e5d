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
    certify_large_bytes: int = 20 * 1024 * 1024
    sandbox_signing_key: Path | None = None
    sandbox_signing_cert: Path | None = None

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
            certify_large_bytes=_env_int("GATEWAY_CERTIFY_LARGE_BYTES", 20 * 1024 * 1024),
            sandbox_signing_key=(
                Path(env["GATEWAY_SANDBOX_SIGNING_KEY"]) if env.get("GATEWAY_SANDBOX_SIGNING_KEY") else None
            ),
            sandbox_signing_cert=(
                Path(env["GATEWAY_SANDBOX_SIGNING_CERT"]) if env.get("GATEWAY_SANDBOX_SIGNING_CERT") else None
            ),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
