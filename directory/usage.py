"""Usage records (用证记录): appended on every verification or pull that names a holder."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import License, UsageRecord

__all__ = ["record_usage", "record_license_usage", "usage_of_holder"]


def record_usage(session: Session, *, at: datetime, holder_id: str, license_id: str, actor: str,
                 purpose: str, outcome: str, service_item_code: str | None = None,
                 case_number: str | None = None,
                 detail: dict[str, Any] | None = None) -> UsageRecord:
    row = UsageRecord(id=str(uuid.uuid4()), at=at, holder_id=holder_id, license_id=license_id,
                      actor=actor, purpose=purpose, outcome=outcome,
                      service_item_code=service_item_code, case_number=case_number,
                      detail=detail or {})
    session.add(row)
    session.flush()
    return row


def record_license_usage(session: Session, *, at: datetime, license_id: str, actor: str,
                         purpose: str, outcome: str,
                         detail: dict[str, Any] | None = None) -> UsageRecord | None:
    """A usage record for a license found in the registry (None when the id is unknown)."""
    row = session.get(License, license_id)
    if row is None:
        return None
    return record_usage(session, at=at, holder_id=row.holder_id, license_id=license_id,
                        actor=actor, purpose=purpose, outcome=outcome, detail=detail)


def usage_of_holder(session: Session, *, holder_id: str, limit: int = 200) -> list[UsageRecord]:
    return list(session.scalars(select(UsageRecord).where(UsageRecord.holder_id == holder_id)
                                .order_by(UsageRecord.at.desc()).limit(limit)))
