"""Runtime settings, read once from ``GATEWAY_*`` environment variables and checked when read.

Defaults give a working gateway with no setup: SQLite and blobs under ``./var``. Each field of
:class:`Settings` is one setting: its variable is ``GATEWAY_<FIELD>`` and its type annotation
says how the variable is parsed (``int``, ``float``, ``bool``, ``str``, ``Path``, ``Path | None``,
a ``Literal`` of choices). Constraints a type cannot say (a minimum, a URL, a secret that must
not be echoed) go in :func:`setting`. So adding a setting is one line, e.g.::

    relay_interval: float = setting(5.0, minimum=0.1)

A bad value stops the process before it serves anything, with :class:`SettingsError` naming the
variable and what it expects, e.g. ``GATEWAY_LEASE_SECONDS must be an integer >= 1, not 'abc'``;
an empty variable counts as unset.
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
WSDL_DIR = Path(__file__).resolve().parent / "wsdl"
"""The published WSDL: ``wsdl/`` in the repository (through the link gateway/wsdl), a copy in the wheel."""
ENV_PREFIX = "GATEWAY_"
INSTANCE_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,35}")

Kind = Literal["plain", "url", "database_url"]
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(ValueError):
    """A setting has a value the gateway cannot use; the message names the variable and what it expects."""


def setting(default: Any, *, minimum: float | None = None, kind: Kind = "plain", secret: bool = False) -> Any:
    """A :class:`Settings` field with constraints beyond its type.

    ``minimum``: smallest accepted number (numbers default to at least 1). ``kind="url"``: an
    absolute http(s) URL; ``kind="database_url"``: a SQLAlchemy URL. ``secret``: the value is
    never repeated in an error message nor shown in the settings' repr.
    """
    return field(default=default, repr=not secret, metadata={"minimum": minimum, "kind": kind, "secret": secret})


def env_name(name: str) -> str:
    """The environment variable of field ``name``."""
    return ENV_PREFIX + name.upper()


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


@dataclass(frozen=True)
class Settings:
    """Everything an operator can tune; ``from_env`` maps each field to ``GATEWAY_<FIELD>``."""

    data_dir: Path = Path("var")
    database_url: str = setting("", kind="database_url", secret=True)
    """Empty: SQLite in ``data_dir``."""
    blob_dir: Path | None = None
    """None: ``data_dir/blobs``."""
    max_document_bytes: int = 64 * 1024 * 1024
    lease_seconds: int = 300
    max_pending_items: int = 100
    max_fetch_bytes: int = 64 * 1024 * 1024
    """getDocuments answers items while their files together stay within this many bytes (the first always)."""
    ack_overdue_hours: int = setting(24, minimum=0)
    trusted_certs: Path | None = None
    operator_password: str = setting("", secret=True)
    wsse_window_seconds: int = 300
    """How far a WS-Security Created may be from the gateway's clock, either way; nonces are kept as long."""
    public_url: str = setting("", kind="url")
    """The endpoint address the served WSDL names; unset = the address the client used (Host)."""
    trusted_proxy: bool = False
    """A proxy in front sets X-Forwarded-Host/-Proto, so the WSDL address may be read from them."""
    metrics_token: str = setting("", secret=True)
    """Unset = /metrics answers anyone; set = Bearer token or Basic password required."""
    metrics_agency_labels: bool = False
    """Per-agency queue-depth series on /metrics (they name which agencies have documents waiting)."""
    metrics_cache_seconds: float = setting(5.0, minimum=0)
    """The store gauges are computed at most once per this many seconds per process."""
    header_timeout: int = 10
    """Seconds a client may take from connecting to the end of its request headers."""
    body_timeout: int = 300
    """Seconds a client may take to send a request body."""
    # Network of gateways (docs/federation.md): this instance, its tier, and its link upstream.
    instance_id: str = "local"
    """This instance's id in the network: 1-35 letters, digits, '-', '_' or '.'."""
    role: Literal["national", "provincial"] = "national"
    upstream_url: str = setting("", kind="url")
    """Provincial only: the national instance's base URL (its relay endpoint is ``/relay`` there)."""
    upstream_secret: str = setting("", secret=True)
    relay_interval: float = setting(5.0, minimum=0.05)
    relay_max_attempts: int = 8
    relay_backoff_seconds: float = setting(30.0, minimum=0)
    # Certification runs (docs/certification.md).
    certify_large_bytes: int = 20 * 1024 * 1024
    """Size of the large test attachment the sandbox agency sends."""
    sandbox_signing_key: Path | None = None
    sandbox_signing_cert: Path | None = None
    """With GATEWAY_TRUSTED_CERTS: the sandbox also sends a document signed with this key and certificate."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for spec in fields(self):
            _check(spec, getattr(self, spec.name), hints[spec.name])
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'gateway.sqlite3'}")
        if self.blob_dir is None:
            object.__setattr__(self, "blob_dir", self.data_dir / "blobs")
        if not INSTANCE_ID_PATTERN.fullmatch(self.instance_id):
            raise SettingsError(
                f"{env_name('instance_id')} must be 1-35 letters, digits, '-', '_' or '.', not '{self.instance_id}'"
            )

    @property
    def max_request_bytes(self) -> int:
        """Largest SOAP body accepted: the base64 of the largest document plus envelope headroom."""
        return self.max_document_bytes * 4 // 3 + 64 * 1024

    @classmethod
    def from_env(cls, environ: typing.Mapping[str, str] | None = None, /, **overrides: object) -> typing.Self:
        """Settings from ``GATEWAY_*`` (``environ``, default ``os.environ``), then ``overrides`` on top.

        Raises :class:`SettingsError` for the first variable that cannot be used.
        """
        env = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for spec in fields(cls):
            if spec.name in overrides:
                continue
            raw = env.get(env_name(spec.name), "").strip()
            if raw:
                values[spec.name] = _parse(spec, raw, hints[spec.name])
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]  # field names come from fields(cls)


def describe(spec: Any, annotation: Any) -> str:
    """What a field accepts, in the words of an error message ("an integer >= 1")."""
    minimum = spec.metadata.get("minimum")
    kind = spec.metadata.get("kind", "plain")
    base, optional = _unwrap_optional(annotation)
    if kind == "url":
        text = "an http:// or https:// URL"
    elif kind == "database_url":
        text = "a database URL such as sqlite:///var/gateway.sqlite3 or postgresql+psycopg://user@host/db"
    elif base is bool:
        text = "a boolean (1, true, yes, on or 0, false, no, off)"
    elif base is int:
        text = f"an integer >= {1 if minimum is None else _number(minimum)}"
    elif base is float:
        text = f"a number >= {1 if minimum is None else _number(minimum)}"
    elif base is Path:
        text = "a path"
    elif typing.get_origin(base) is Literal:
        text = "one of " + ", ".join(str(choice) for choice in typing.get_args(base))
    else:
        text = "text"
    return f"{text} (or empty for none)" if optional else text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(annotation, False)``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        others = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(others) == 1:
            return others[0], True
    return annotation, False


def _refuse(spec: Any, annotation: Any, shown: object) -> SettingsError:
    value = "" if spec.metadata.get("secret") else f", not {shown!r}"
    return SettingsError(f"{env_name(spec.name)} must be {describe(spec, annotation)}{value}")


def _parse(spec: Any, raw: str, annotation: Any) -> object:
    """The typed value of a non-empty variable; range and format checks follow in ``__post_init__``."""
    base, _optional = _unwrap_optional(annotation)
    try:
        if base is bool:
            lowered = raw.lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(raw)
            return lowered in _TRUE
        if base is int:
            return int(raw)
        if base is float:
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError(raw)
            return number
        if base is Path:
            return Path(raw)
    except ValueError:
        raise _refuse(spec, annotation, raw) from None
    return raw


def _check(spec: Any, value: object, annotation: Any) -> None:
    """Refuse a value outside what the field accepts (however the value was given)."""
    base, optional = _unwrap_optional(annotation)
    if value is None:
        if not optional:
            raise _refuse(spec, annotation, value)
        return
    minimum = spec.metadata.get("minimum")
    kind = spec.metadata.get("kind", "plain")
    if base is bool:
        ok = isinstance(value, bool)
    elif base in (int, float):
        ok = _number_ok(value, integer=base is int, minimum=1 if minimum is None else minimum)
    elif base is Path:
        ok = isinstance(value, Path) and "\0" not in str(value)
    elif typing.get_origin(base) is Literal:
        ok = value in typing.get_args(base)
    else:
        ok = isinstance(value, str)
    if ok and kind == "url" and value:
        parts = urlsplit(str(value))
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    if ok and kind == "database_url" and value:
        ok = _is_database_url(str(value))
    if not ok:
        raise _refuse(spec, annotation, value)


def _number_ok(value: object, *, integer: bool, minimum: float) -> bool:
    """A finite number of the field's kind (an int field takes no float; no field takes a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if integer and not isinstance(value, int):
        return False
    return math.isfinite(value) and value >= minimum


def _is_database_url(value: str) -> bool:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value)
    except ArgumentError:
        return False
    return True
