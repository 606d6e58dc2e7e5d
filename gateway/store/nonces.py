"""WS-Security nonces: remember each (agency, nonce) until its token expires, so a replay is refused.

The unique constraint on (agency, nonce) makes the check atomic on every worker and node that
shares the database: of two requests carrying the same nonce, exactly one INSERT succeeds.
Expired rows are deleted at most once per :data:`PRUNE_INTERVAL` per process, through the index on
``expires_at``, so the table stays as small as the traffic of one window.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError

from gateway.store.database import Database
from gateway.store.models import WsseNonce

PRUNE_INTERVAL = 60.0
"""Seconds between two deletions of expired nonces by one process."""

_last_prune = 0.0
_prune_lock = threading.Lock()


def remember(db: Database, agency_id: int, nonce: str, expires_at: datetime, now: datetime) -> bool:
    """Record ``nonce`` for ``agency_id`` until ``expires_at``; False if it is already recorded (a replay)."""
    digest = hashlib.sha256(nonce.encode("utf-8")).hexdigest()
    try:
        with db.transaction() as session:
            if _prune_due():
                session.execute(delete(WsseNonce).where(WsseNonce.expires_at < now))
            session.execute(insert(WsseNonce).values(agency_id=agency_id, nonce_sha256=digest, expires_at=expires_at))
    except IntegrityError:
        return _reuse_expired(db, agency_id, digest, expires_at, now)
    return True


def _reuse_expired(db: Database, agency_id: int, digest: str, expires_at: datetime, now: datetime) -> bool:
    """The nonce is recorded: accept it only if that record expired and was not pruned yet (one winner)."""
    with db.transaction() as session:
        result = session.execute(
            update(WsseNonce)
            .where(WsseNonce.agency_id == agency_id, WsseNonce.nonce_sha256 == digest, WsseNonce.expires_at < now)
            .values(expires_at=expires_at)
        )
    return bool(getattr(result, "rowcount", 0))


def _prune_due() -> bool:
    global _last_prune
    with _prune_lock:
        moment = time.monotonic()
        if moment - _last_prune < PRUNE_INTERVAL:
            return False
        _last_prune = moment
        return True
