"""Directory maintenance use cases (admin) and reads (public)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from directory import catalog as q
from directory.events import append_event
from license_core.clock import Clock
from license_core.errors import InvalidCatalog, ValidationFailed

__all__ = ["create_or_replace_license_type", "create_or_replace_issuer"]


def create_or_replace_license_type(session: Session, *, raw: dict[str, Any], actor: str,
                                   clock: Clock, expect_code: str | None = None) -> dict[str, Any]:
    """Validate and upsert one license type; the change is an event in the chain."""
    spec = q.LicenseTypeSpec.from_dict(raw, where="")
    if expect_code is not None and spec.code != expect_code:
        raise ValidationFailed("the code in the body differs from the code in the path",
                               field="code")
    known = {i.code for i in q.list_issuers(session)}
    for code in spec.issuer_codes:
        if code not in known:
            raise InvalidCatalog(f"issuer {code} is not in the directory", field="issuer_codes")
    now = clock.now()
    row = q.upsert_license_type(session, spec=spec, at=now)
    append_event(session, at=now, actor=actor, action="license_type.upsert", subject=spec.code)
    return q.license_type_to_dict(row)


def create_or_replace_issuer(session: Session, *, raw: dict[str, Any], actor: str,
                             clock: Clock) -> dict[str, Any]:
    spec = q.IssuerSpec.from_dict(raw, where="")
    now = clock.now()
    row = q.upsert_issuer(session, spec=spec, at=now)
    append_event(session, at=now, actor=actor, action="issuer.upsert", subject=spec.code)
    return q.issuer_to_dict(row)
