"""Queries for the built-in PKI: issued certificates, revocations and stored key material.

Serials are stored as lowercase hex text (they exceed 64 bits); issuers as RFC 4514 names.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Certificate, KeyMaterial

__all__ = ["find_certificate", "add_certificate", "revoke_certificate", "revoked_certificates",
           "serial_exists", "active_key", "keys_for_role", "add_key", "get_key", "set_key_status",
           "list_keys"]


def find_certificate(session: Session, *, serial: int, issuer: str) -> Certificate | None:
    return session.get(Certificate, (format(serial, "x"), issuer))


def serial_exists(session: Session, *, serial: int) -> bool:
    return session.scalars(select(Certificate.serial)
                           .where(Certificate.serial == format(serial, "x"))).first() is not None


def add_certificate(session: Session, *, serial: int, issuer: str, role: str, label: str | None,
                    issuer_code: str | None, subject: str, not_before: datetime,
                    not_after: datetime, der: bytes) -> Certificate:
    existing = find_certificate(session, serial=serial, issuer=issuer)
    if existing is not None:
        return existing
    row = Certificate(serial=format(serial, "x"), issuer_name=issuer, role=role, label=label,
                      issuer_code=issuer_code, subject=subject, not_before=not_before,
                      not_after=not_after, der=der)
    session.add(row)
    session.flush()
    return row


def revoke_certificate(session: Session, *, serial: int, issuer: str, at: datetime,
                       reason: str) -> Certificate | None:
    """Mark revoked (first revocation wins); None when the certificate is unknown."""
    row = session.scalars(select(Certificate).where(
        Certificate.serial == format(serial, "x"), Certificate.issuer_name == issuer)
        .with_for_update()).first()
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at, row.revocation_reason = at, reason
        session.flush()
    return row


def revoked_certificates(session: Session, *, issuer: str) -> list[Certificate]:
    return list(session.scalars(select(Certificate).where(
        Certificate.issuer_name == issuer, Certificate.revoked_at.is_not(None))
        .order_by(Certificate.revoked_at)))


def add_key(session: Session, *, label: str, role: str, issuer_code: str | None,
            certificate_der: bytes, key_enc: bytes | None, pkcs11_ref: str | None,
            status: str, at: datetime) -> KeyMaterial:
    row = KeyMaterial(label=label, role=role, issuer_code=issuer_code,
                      certificate_der=certificate_der, key_enc=key_enc, pkcs11_ref=pkcs11_ref,
                      status=status, created_at=at)
    session.add(row)
    session.flush()
    return row


def get_key(session: Session, *, label: str) -> KeyMaterial | None:
    return session.get(KeyMaterial, label)


def active_key(session: Session, *, role: str, issuer_code: str | None = None) -> KeyMaterial | None:
    """The newest key of a role (and department) that is not retired."""
    query = select(KeyMaterial).where(KeyMaterial.role == role,
                                      KeyMaterial.status.in_(("active", "revoked")))
    if issuer_code is not None:
        query = query.where(KeyMaterial.issuer_code == issuer_code)
    return session.scalars(query.order_by(KeyMaterial.created_at.desc(),
                                          KeyMaterial.label.desc())).first()


def keys_for_role(session: Session, *, role: str) -> list[KeyMaterial]:
    return list(session.scalars(select(KeyMaterial).where(KeyMaterial.role == role)
                                .order_by(KeyMaterial.created_at)))


def list_keys(session: Session) -> list[KeyMaterial]:
    return list(session.scalars(select(KeyMaterial).order_by(KeyMaterial.issuer_code,
                                                             KeyMaterial.created_at)))


def set_key_status(session: Session, *, label: str, status: str) -> None:
    row = session.get(KeyMaterial, label)
    if row is not None:
        row.status = status
        session.flush()
