"""Seal key management use cases (CLI ``elicense keys``)."""

from __future__ import annotations

from typing import Any

from cryptography import x509

from directory import pki_store as q
from directory.events import append_event
from signing.ca import issuer_key, parse_reason

from ..container import Container
from ..platform.pki import platform_pki

__all__ = ["list_keys", "rotate_seal", "revoke_seal"]


def list_keys(container: Container) -> list[dict[str, Any]]:
    pki = platform_pki(container)
    out = []
    with container.session() as session:
        rows = q.list_keys(session)
    for row in rows:
        cert = x509.load_der_x509_certificate(row.certificate_der)
        revoked = pki.store.revocation_status(cert.serial_number, issuer_key(cert.issuer))
        out.append({"label": row.label, "role": row.role, "issuer_code": row.issuer_code,
                    "status": row.status, "serial": format(cert.serial_number, "x"),
                    "subject": cert.subject.rfc4514_string(),
                    "not_after": cert.not_valid_after_utc.isoformat(),
                    "certificate_status": "revoked" if revoked else "good",
                    "store": "pkcs11" if row.pkcs11_ref else "database"})
    return out


def rotate_seal(container: Container, *, issuer_code: str, actor: str) -> dict[str, Any]:
    identity = platform_pki(container).rotate(issuer_code)
    serial = format(identity.certificate.serial_number, "x")
    with container.session() as session, session.begin():
        append_event(session, at=container.clock.now(), actor=actor, action="seal_key.rotate",
                     subject=issuer_code, detail={"label": identity.label, "serial": serial})
    return {"issuer_code": issuer_code, "label": identity.label, "serial": serial}


def revoke_seal(container: Container, *, issuer_code: str, reason: str,
                actor: str) -> dict[str, Any]:
    reason_name = parse_reason(reason).name  # raises ValidationFailed naming the choices
    cert = platform_pki(container).revoke_current(issuer_code, reason=reason_name)
    serial = format(cert.serial_number, "x")
    with container.session() as session, session.begin():
        append_event(session, at=container.clock.now(), actor=actor, action="seal_key.revoke",
                     subject=issuer_code, reason=reason_name, detail={"serial": serial})
    return {"issuer_code": issuer_code, "serial": serial, "reason": reason_name}
