"""Named counters in the database, locked per row so that workers never hand out one twice."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import Counter

__all__ = ["lock_counter", "next_value"]


def lock_counter(session: Session, name: str) -> Counter:
    """The counter row, locked for this transaction (created at 0 on first use)."""
    row = session.scalars(select(Counter).where(Counter.name == name).with_for_update()).first()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            session.add(Counter(name=name, value=0))
    except IntegrityError:
        pass  # another worker created it first
    return session.scalars(select(Counter).where(Counter.name == name).with_for_update()).one()


def next_value(session: Session, name: str) -> int:
    row = lock_counter(session, name)
    row.value = row.value + 1
    session.flush()
    return row.value
