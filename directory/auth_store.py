"""Queries for 一证通用 login challenges (nonces shared by every worker through the database)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from .models import AuthChallenge

__all__ = ["add_challenge", "consume_challenge", "purge_challenges"]


def add_challenge(session: Session, *, nonce: str, at: datetime,
                  expires_at: datetime) -> AuthChallenge:
    row = AuthChallenge(nonce=nonce, created_at=at, expires_at=expires_at, used_at=None)
    session.add(row)
    session.flush()
    return row


def consume_challenge(session: Session, *, nonce: str, at: datetime) -> bool:
    """Mark the nonce used, in the caller's transaction; ``False`` if it is unknown, expired or
    already used. One conditional UPDATE, so two workers can never both consume it."""
    result = session.execute(
        update(AuthChallenge)
        .where(AuthChallenge.nonce == nonce, AuthChallenge.used_at.is_(None),
               AuthChallenge.expires_at > at)
        .values(used_at=at)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def purge_challenges(session: Session, *, before: datetime) -> int:
    """Delete challenges that expired before ``before`` (used or not); returns how many."""
    result = session.execute(delete(AuthChallenge).where(AuthChallenge.expires_at < before)
                             .execution_options(synchronize_session=False))
    return result.rowcount or 0
