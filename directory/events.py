"""The append-only, hash-chained event log.

Each event's hash covers its canonical content and the previous event's hash, so altering,
deleting or reordering any row breaks the chain from there on. Appends are serialised with a row
lock on the chain-head counter, so concurrent workers on PostgreSQL keep one chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .counters import lock_counter
from .models import Event

__all__ = ["GENESIS", "append_event", "verify_chain", "ChainReport", "event_hash"]

GENESIS = "0" * 64
_HEAD = "event_chain_head"


def event_hash(*, seq: int, at: datetime, actor: str, action: str, subject: str,
               reason: str | None, detail: dict[str, Any], prev_hash: str) -> str:
    body = {"seq": seq, "at": at.isoformat(timespec="microseconds"), "actor": actor,
            "action": action, "subject": subject, "reason": reason, "detail": detail,
            "prev": prev_hash}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def append_event(session: Session, *, at: datetime, actor: str, action: str, subject: str,
                 reason: str | None = None, detail: dict[str, Any] | None = None) -> Event:
    """Append one event in the caller's transaction (it commits with the change it records)."""
    counter = lock_counter(session, _HEAD)
    last = session.scalars(select(Event).order_by(Event.seq.desc()).limit(1)).first()
    prev = last.hash if last else GENESIS
    seq = (last.seq if last else 0) + 1
    counter.value = seq
    at = at.replace(microsecond=at.microsecond)
    clean_detail = json.loads(json.dumps(detail or {}, ensure_ascii=False, default=str))
    row = Event(seq=seq, at=at, actor=actor, action=action, subject=subject, reason=reason,
                detail=clean_detail, prev_hash=prev,
                hash=event_hash(seq=seq, at=at, actor=actor, action=action, subject=subject,
                                reason=reason, detail=clean_detail, prev_hash=prev))
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events: int
    head: str
    broken_at: int | None = None
    problem: str | None = None


def verify_chain(session: Session, *, batch: int = 1000) -> ChainReport:
    """Walk the whole chain; report the first event whose hash or link does not hold."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    after = 0
    while True:
        rows = session.scalars(select(Event).where(Event.seq > after)
                               .order_by(Event.seq).limit(batch)).all()
        if not rows:
            break
        for row in rows:
            if row.seq != expected_seq:
                return ChainReport(False, count, prev, expected_seq,
                                   f"event {expected_seq} is missing (next is {row.seq})")
            if row.prev_hash != prev:
                return ChainReport(False, count, prev, row.seq,
                                   f"event {row.seq} does not link to event {row.seq - 1}")
            recomputed = event_hash(seq=row.seq, at=row.at, actor=row.actor, action=row.action,
                                    subject=row.subject, reason=row.reason,
                                    detail=row.detail or {}, prev_hash=row.prev_hash)
            if recomputed != row.hash:
                return ChainReport(False, count, prev, row.seq,
                                   f"event {row.seq} ({row.action} {row.subject}) was altered: "
                                   "its content no longer matches its hash")
            prev = row.hash
            expected_seq += 1
            count += 1
            after = row.seq
    return ChainReport(True, count, prev)
