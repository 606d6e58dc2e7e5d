"""The agency directory and agency credentials, as operations over a store session.

Operators build the directory (the shipped 2016 starting file, imports from the national
catalogue, single additions) and hand each agency its secret. These functions hold the rules;
the CLI (and later the operator pages) only parse arguments and print. Every function takes the
caller's session and never commits, so a whole import succeeds or changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import INSTANCE_ID_PATTERN
from gateway.errors import ClientError
from gateway.exchange.credentials import hash_secret, new_secret
from gateway.federation import directory_sync
from gateway.store import audit
from gateway.store.models import Agency, Credential

CODE_PATTERN = re.compile(r"^[0-9A-Z]{2,3}(\.[0-9A-Z]{2,3}){2,3}$")
COLUMNS = ("code", "name", "level", "parent_code", "test_code", "note", "home_instance")
REQUIRED_COLUMNS = ("code", "name", "level")
LEVELS = (1, 2, 3, 4)
SHIPPED_DIRECTORY = Path(__file__).resolve().parent / "data" / "agencies.csv"
OPERATOR = "operator"
"""Audit actor for directory and credential changes made by the gateway's operator."""

_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"", "0", "false", "no", "n"}


class DirectoryError(ClientError):
    """A directory or credential request the operator must correct (bad row, unknown code...)."""


@dataclass(frozen=True)
class AgencyRow:
    """One agency as read from an import file; ``where`` locates it for error messages."""

    code: str
    name: str
    level: int
    parent_code: str | None
    test_code: bool
    note: str | None
    where: str
    home_instance: str | None = None
    """The gateway instance serving the agency (docs/federation.md); None = this one."""


@dataclass(frozen=True)
class ImportResult:
    """How an import changed the directory."""

    added: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged


# -- reading import files ---------------------------------------------------------------------


def check_code(code: str, where: str = "") -> str:
    """Return ``code`` if it has the QCVN 102 identifier shape, else raise DirectoryError."""
    if not CODE_PATTERN.match(code):
        prefix = f"{where}: " if where else ""
        raise DirectoryError(
            f"{prefix}'{code}' is not an agency code: expected groups of 2-3 digits or capital letters "
            "separated by dots, e.g. 000.00.00.G22"
        )
    return code


def _parse_row(raw: dict[str, Any], where: str) -> AgencyRow:
    missing = [c for c in REQUIRED_COLUMNS if raw.get(c) in (None, "")]
    if missing:
        raise DirectoryError(f"{where}: missing {', '.join(missing)}")
    code = str(raw["code"]).strip()
    check_code(code, where)
    name = str(raw["name"]).strip()
    if not name:
        raise DirectoryError(f"{where}: agency {code} has an empty name")
    try:
        level = int(str(raw["level"]).strip())
    except ValueError:
        raise DirectoryError(f"{where}: level '{raw['level']}' of {code} is not a number 1-4") from None
    if level not in LEVELS:
        raise DirectoryError(f"{where}: level {level} of {code} is not one of 1-4")
    parent = str(raw.get("parent_code") or "").strip() or None
    if parent is not None:
        check_code(parent, f"{where}: parent_code")
        if parent == code:
            raise DirectoryError(f"{where}: agency {code} names itself as its parent")
    flag = str(raw.get("test_code") if raw.get("test_code") is not None else "").strip().lower()
    if flag not in _TRUE | _FALSE:
        raise DirectoryError(f"{where}: test_code '{raw.get('test_code')}' of {code} must be 0 or 1")
    note = str(raw.get("note") or "").strip() or None
    home = str(raw.get("home_instance") or "").strip() or None
    if home is not None and not INSTANCE_ID_PATTERN.fullmatch(home):
        raise DirectoryError(f"{where}: home_instance '{home}' of {code} is not an instance id")
    return AgencyRow(code, name, level, parent, flag in _TRUE, note, where, home)


def parse_csv(text: str) -> list[AgencyRow]:
    """Rows of a directory CSV (header ``code,name,level,parent_code,test_code,note``)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DirectoryError(f"line 1: the header lacks {', '.join(missing)}; expected columns {','.join(COLUMNS)}")
    rows: list[AgencyRow] = []
    for raw in reader:
        where = f"line {reader.line_num}"
        if None in raw:
            raise DirectoryError(f"{where}: more fields than the header has columns")
        if not any((value or "").strip() for value in raw.values()):
            continue
        rows.append(_parse_row(raw, where))
    return rows


def parse_json(text: str) -> list[AgencyRow]:
    """Rows of a directory JSON file: a list of objects with the CSV's columns (or ``{"agencies": [...]}``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DirectoryError(f"line {error.lineno}: not valid JSON ({error.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("agencies"), list):
        data = data["agencies"]
    if not isinstance(data, list):
        raise DirectoryError("a JSON directory must be a list of agency objects")
    rows = []
    for index, item in enumerate(data, start=1):
        where = f"entry {index}"
        if not isinstance(item, dict):
            raise DirectoryError(f"{where}: expected an object with code, name, level")
        rows.append(_parse_row(item, where))
    return rows


def read_rows(path: Path) -> list[AgencyRow]:
    """Rows of a ``.json`` or CSV directory file (UTF-8); errors leave naming the file to the caller."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DirectoryError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    if path.suffix.lower() == ".json":
        return parse_json(text)
    return parse_csv(text)


# -- changing the directory ---------------------------------------------------------------------


def _by_code(session: Session, codes: Iterable[str]) -> dict[str, Agency]:
    wanted = sorted(set(codes))
    found: dict[str, Agency] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update({a.code: a for a in session.scalars(select(Agency).where(Agency.code.in_(chunk)))})
    return found


def import_agencies(
    session: Session,
    rows: Sequence[AgencyRow],
    now: datetime,
    on_row: Callable[[AgencyRow], None] | None = None,
) -> ImportResult:
    """Add new agencies and update changed ones; every row is checked before anything is written.

    Existing agencies keep their ``active`` flag and credentials: an import describes the
    directory, it does not switch agencies on or off.
    """
    seen: dict[str, str] = {}
    for row in rows:
        if row.code in seen:
            raise DirectoryError(f"{row.where}: {row.code} appears twice (first at {seen[row.code]})")
        seen[row.code] = row.where
    existing = _by_code(session, [r.code for r in rows] + [r.parent_code for r in rows if r.parent_code])
    for row in rows:
        if row.parent_code and row.parent_code not in seen and row.parent_code not in existing:
            raise DirectoryError(
                f"{row.where}: parent {row.parent_code} of {row.code} is neither in the file nor in the directory"
            )
    added = updated = unchanged = 0
    changed: list[Agency] = []
    for row in rows:
        agency = existing.get(row.code)
        if agency is None:
            agency = _new_agency(row, now)
            session.add(agency)
            changed.append(agency)
            added += 1
        elif (agency.name, agency.level, agency.parent_code, agency.test_code, agency.home_instance) != (
            row.name,
            row.level,
            row.parent_code,
            row.test_code,
            row.home_instance,
        ):
            agency.name, agency.level, agency.parent_code, agency.test_code, agency.home_instance = (
                row.name,
                row.level,
                row.parent_code,
                row.test_code,
                row.home_instance,
            )
            changed.append(agency)
            updated += 1
        else:
            unchanged += 1
        if on_row is not None:
            on_row(row)
    session.flush()
    directory_sync.stamp(session, changed)
    return ImportResult(added, updated, unchanged)


def load_shipped_directory(session: Session, now: datetime) -> ImportResult:
    """Import the 2016 starting directory shipped in ``gateway/data/agencies.csv``."""
    return import_agencies(session, read_rows(SHIPPED_DIRECTORY), now)


def get_agency(session: Session, code: str) -> Agency:
    """The agency with ``code``, or DirectoryError."""
    agency = session.scalar(select(Agency).where(Agency.code == code))
    if agency is None:
        raise DirectoryError(f"No agency {code} in the directory; see `edxml-gateway agencies list`.")
    return agency


def add_agency(
    session: Session,
    code: str,
    name: str,
    level: int,
    now: datetime,
    parent_code: str | None = None,
    test_code: bool = False,
    home_instance: str | None = None,
) -> Agency:
    """Add one agency; its parent, if any, must already be in the directory.

    ``home_instance`` names the gateway instance that serves it when that is not this one.
    """
    row = _parse_row(
        {
            "code": code,
            "name": name,
            "level": level,
            "parent_code": parent_code,
            "test_code": int(test_code),
            "home_instance": home_instance,
        },
        "agency",
    )
    if session.scalar(select(Agency.id).where(Agency.code == row.code)) is not None:
        raise DirectoryError(f"Agency {row.code} is already in the directory.")
    if row.parent_code is not None:
        get_agency(session, row.parent_code)
    agency = _new_agency(row, now)
    session.add(agency)
    session.flush()
    directory_sync.stamp(session, [agency])
    audit.append(session, OPERATOR, "agency_add", None, {"agency": row.code, "home": row.home_instance}, now)
    return agency


def _set_active(session: Session, code: str, active: bool, now: datetime) -> Agency:
    agency = get_agency(session, code)
    if agency.active != active:
        agency.active = active
        session.flush()
        directory_sync.stamp(session, [agency])
        audit.append(session, OPERATOR, "agency_enable" if active else "agency_disable", None, {"agency": code}, now)
    return agency


def disable_agency(session: Session, code: str, now: datetime) -> Agency:
    """Stop an agency: it can no longer authenticate nor be addressed; its history stays."""
    return _set_active(session, code, False, now)


def enable_agency(session: Session, code: str, now: datetime) -> Agency:
    """Let a disabled agency authenticate and receive documents again."""
    return _set_active(session, code, True, now)


def list_agencies(session: Session, level: int | None = None, parent: str | None = None) -> list[Agency]:
    """The directory ordered by level then code, optionally one level or one parent's children."""
    query = select(Agency).order_by(Agency.level, Agency.code)
    if level is not None:
        query = query.where(Agency.level == level)
    if parent is not None:
        query = query.where(Agency.parent_code == parent)
    return list(session.scalars(query))


# -- credentials --------------------------------------------------------------------------------


def credential_is_live(credential: Credential, at: datetime) -> bool:
    """A credential authenticates at ``at`` when issued by then, not revoked and not expired."""
    return (
        credential.created_at <= at
        and (credential.revoked_at is None or credential.revoked_at > at)
        and (credential.expires_at is None or credential.expires_at > at)
    )


def live_credentials(session: Session, code: str, at: datetime) -> list[Credential]:
    """The credentials of agency ``code`` that authenticate at ``at``."""
    agency = get_agency(session, code)
    return [c for c in agency.credentials if credential_is_live(c, at)]


def issue_credential(session: Session, code: str, now: datetime, expires_at: datetime | None = None) -> str:
    """Create a credential and return its secret: the only time the plain secret exists."""
    agency = get_agency(session, code)
    if expires_at is not None and expires_at <= now:
        raise DirectoryError(f"The expiry {expires_at.isoformat()} is not in the future.")
    secret = new_secret()
    credential = Credential(agency_id=agency.id, secret_hash=hash_secret(secret), created_at=now, expires_at=expires_at)
    session.add(credential)
    session.flush()
    audit.append(
        session,
        OPERATOR,
        "credential_issue",
        None,
        {"agency": code, "credential": credential.id, "expires_at": expires_at.isoformat() if expires_at else None},
        now,
    )
    return secret


def rotate_credential(session: Session, code: str, now: datetime, grace: timedelta | None = None) -> str:
    """Issue a new secret and retire the agency's live ones, at once or after ``grace``.

    A grace period lets the agency redeploy its software with the new secret while the old one
    still works; it only ever shortens an old credential's life, never extends it.
    """
    retire_at = now + grace if grace is not None and grace > timedelta(0) else None
    retired = []
    for credential in live_credentials(session, code, now):
        if retire_at is None:
            credential.revoked_at = now
        elif credential.expires_at is None or credential.expires_at > retire_at:
            credential.expires_at = retire_at
        retired.append(credential.id)
    session.flush()
    audit.append(
        session,
        OPERATOR,
        "credential_rotate",
        None,
        {"agency": code, "retired": retired, "retire_at": (retire_at or now).isoformat()},
        now,
    )
    return issue_credential(session, code, now)


def revoke_credentials(session: Session, code: str, now: datetime) -> int:
    """Revoke every credential of an agency that is still live or scheduled; returns how many."""
    agency = get_agency(session, code)
    revoked = [c for c in agency.credentials if c.revoked_at is None and (c.expires_at is None or c.expires_at > now)]
    for credential in revoked:
        credential.revoked_at = now
    session.flush()
    detail = {"agency": code, "revoked": [c.id for c in revoked]}
    audit.append(session, OPERATOR, "credential_revoke", None, detail, now)
    return len(revoked)


def _new_agency(row: AgencyRow, now: datetime) -> Agency:
    """A new, active directory entry from an imported or added row."""
    return Agency(
        code=row.code,
        name=row.name,
        level=row.level,
        parent_code=row.parent_code,
        active=True,
        require_signature=False,
        test_code=row.test_code,
        created_at=now,
        home_instance=row.home_instance,
    )
