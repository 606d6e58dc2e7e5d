"""Peer instances: who may call this instance's ``/relay`` endpoint, and who is upstream."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import INSTANCE_ID_PATTERN
from gateway.directory import OPERATOR, DirectoryError
from gateway.exchange.credentials import hash_secret, new_secret, secret_matches
from gateway.store import audit
from gateway.store.models import Peer

ROLES = ("national", "provincial")


def add_peer(session: Session, instance_id: str, name: str, role: str, now: datetime) -> str:
    """Register a peer instance and return its secret (the only time it exists in plain text)."""
    if not INSTANCE_ID_PATTERN.fullmatch(instance_id):
        raise DirectoryError(f"'{instance_id}' is not an instance id: 1-35 letters, digits, '-', '_' or '.'.")
    if role not in ROLES:
        raise DirectoryError(f"Role '{role}' must be one of {', '.join(ROLES)}.")
    if session.scalar(select(Peer.id).where(Peer.instance_id == instance_id)) is not None:
        raise DirectoryError(f"Peer {instance_id} is already registered; see `edxml-gateway peers list`.")
    secret = new_secret()
    session.add(
        Peer(
            instance_id=instance_id, name=name, role=role, secret_hash=hash_secret(secret), created_at=now, active=True
        )
    )
    session.flush()
    audit.append(session, OPERATOR, "peer_add", None, {"peer": instance_id, "role": role}, now)
    return secret


def list_peers(session: Session) -> list[Peer]:
    return list(session.scalars(select(Peer).order_by(Peer.instance_id)))


def authenticate(session: Session, instance_id: str | None, secret: str | None) -> str | None:
    """The peer's instance id when its secret matches an active peer row; None otherwise."""
    if not instance_id or not secret:
        return None
    peer = session.scalar(select(Peer).where(Peer.instance_id == instance_id, Peer.active.is_(True)))
    if peer is None or peer.secret_hash is None or not secret_matches(secret, peer.secret_hash):
        return None
    return peer.instance_id
