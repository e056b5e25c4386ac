"""The holder's own view: their licenses and who used them (用证记录)."""

from __future__ import annotations

from typing import Any

from directory import licenses as q
from directory.usage import usage_of_holder

from ..container import Container
from ..deps import Principal
from .licenses import license_service

__all__ = ["my_licenses", "my_usage"]


def my_licenses(container: Container, principal: Principal) -> dict[str, Any]:
    """Every license version the holder holds or co-holds (their own codes unmasked)."""
    service = license_service(container)
    with container.session() as session:
        rows = q.licenses_of_holder(session, holder_id=principal.subject)
        data = [service.view(session, row) for row in rows]
    return {"data": data, "count": len(data)}


def my_usage(container: Container, principal: Principal) -> dict[str, Any]:
    with container.session() as session:
        rows = usage_of_holder(session, holder_id=principal.subject)
        data = [{"id": r.id, "at": r.at.isoformat(), "license_id": r.license_id,
                 "used_by": r.actor, "purpose": r.purpose, "outcome": r.outcome,
                 "service_item_code": r.service_item_code, "case_number": r.case_number}
                for r in rows]
    return {"data": data, "count": len(data)}
