"""The database-backed ``signing.ca.CertificateStore``: shared by every worker and machine."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session, sessionmaker

from directory import pki_store as q
from directory.counters import next_value
from license_core.clock import utc
from license_core.oids import CertificateRole
from signing.ca import CertificateRecord, RevocationEntry, issuer_key, parse_reason

__all__ = ["DatabaseCertificateStore"]


class DatabaseCertificateStore:
    """Every call is its own short transaction, so a revocation is visible to all at once."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def next_serial(self) -> int:
        with self._sessions() as session:
            while True:
                serial = secrets.randbits(127) | (1 << 120)
                if not q.serial_exists(session, serial=serial):
                    return serial

    def record_certificate(self, certificate: x509.Certificate, *, role: CertificateRole,
                           label: str | None = None, issuer_code: str | None = None) -> None:
        with self._sessions() as session, session.begin():
            q.add_certificate(session, serial=certificate.serial_number,
                              issuer=issuer_key(certificate.issuer),
                              role=CertificateRole(role).value, label=label,
                              issuer_code=issuer_code,
                              subject=certificate.subject.rfc4514_string(),
                              not_before=certificate.not_valid_before_utc,
                              not_after=certificate.not_valid_after_utc,
                              der=certificate.public_bytes(serialization.Encoding.DER))

    def find_certificate(self, serial: int, issuer: str) -> CertificateRecord | None:
        with self._sessions() as session:
            row = q.find_certificate(session, serial=serial, issuer=issuer)
            if row is None:
                return None
            return CertificateRecord(x509.load_der_x509_certificate(row.der),
                                     CertificateRole(row.role), row.label, row.issuer_code)

    def revoke(self, serial: int, issuer: str, *, at: datetime, reason: str) -> RevocationEntry:
        reason_name = parse_reason(reason).name
        with self._sessions() as session, session.begin():
            row = q.revoke_certificate(session, serial=serial, issuer=issuer, at=utc(at),
                                       reason=reason_name)
            if row is None:
                raise KeyError(f"certificate {serial:x} of {issuer} is not in the store")
            return RevocationEntry(serial, issuer, row.revoked_at, row.revocation_reason)

    def revocation_status(self, serial: int, issuer: str) -> RevocationEntry | None:
        with self._sessions() as session:
            row = q.find_certificate(session, serial=serial, issuer=issuer)
            if row is None or row.revoked_at is None:
                return None
            return RevocationEntry(serial, issuer, row.revoked_at, row.revocation_reason)

    def revoked_serials(self, issuer: str) -> Sequence[RevocationEntry]:
        with self._sessions() as session:
            return [RevocationEntry(int(r.serial, 16), issuer, r.revoked_at, r.revocation_reason)
                    for r in q.revoked_certificates(session, issuer=issuer)]

    def next_crl_number(self, issuer: str) -> int:
        with self._sessions() as session, session.begin():
            return next_value(session, f"crl:{issuer}")
