"""The database-backed ``signing.ca.CertificateStore``: shared by every worker and machine."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session, sessionmaker

from directory import pki_store as q
from directory.counters import next_value
from directory.pii import HolderCodeCipher
from license_core.holder_codes import mask_holder_code
from license_core.clock import utc
from license_core.oids import CertificateRole
from signing.ca import CertificateRecord, RevocationEntry, issuer_key, parse_reason

__all__ = ["DatabaseCertificateStore"]


_HOLDER_CODE_IN_NAME = re.compile(r"(?<![0-9A-Z])(111|001)-([0-9A-Z]{18})")


def _masked_subject(certificate: x509.Certificate) -> str:
    return _HOLDER_CODE_IN_NAME.sub(lambda m: f"{m.group(1)}-{mask_holder_code(m.group(2))}",
                                    certificate.subject.rfc4514_string())


class DatabaseCertificateStore:
    """Every call is its own short transaction, so a revocation is visible to all at once.

    A 一证通用 certificate names its holder's code (subject serialNumber): such certificates are
    stored encrypted and their subject text masked (PIPL art. 28), like every holder code.
    """

    def __init__(self, sessions: sessionmaker[Session], cipher: HolderCodeCipher) -> None:
        self._sessions = sessions
        self._cipher = cipher

    def _seal(self, role: CertificateRole, der: bytes) -> bytes:
        if role is CertificateRole.HOLDER:
            return self._cipher.encrypt(der, context=b"holder-certificate")
        return der

    def _open(self, role: str, stored: bytes) -> bytes:
        if role == CertificateRole.HOLDER.value:
            return self._cipher.decrypt(stored, context=b"holder-certificate")
        return stored

    def next_serial(self) -> int:
        with self._sessions() as session:
            while True:
                serial = secrets.randbits(127) | (1 << 120)
                if not q.serial_exists(session, serial=serial):
                    return serial

    def record_certificate(self, certificate: x509.Certificate, *, role: CertificateRole,
                           label: str | None = None, issuer_code: str | None = None) -> None:
        role = CertificateRole(role)
        with self._sessions() as session, session.begin():
            q.add_certificate(session, serial=certificate.serial_number,
                              issuer=issuer_key(certificate.issuer),
                              role=role.value, label=label, issuer_code=issuer_code,
                              subject=_masked_subject(certificate),
                              not_before=certificate.not_valid_before_utc,
                              not_after=certificate.not_valid_after_utc,
                              der=self._seal(role, certificate.public_bytes(
                                  serialization.Encoding.DER)))

    def find_certificate(self, serial: int, issuer: str) -> CertificateRecord | None:
        with self._sessions() as session:
            row = q.find_certificate(session, serial=serial, issuer=issuer)
            if row is None:
                return None
            return CertificateRecord(x509.load_der_x509_certificate(self._open(row.role, row.der)),
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
