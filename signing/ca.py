"""A certificate authority mechanism: issue certificates, revoke them, publish CRLs.

The authority is assembled from a signing key and a :class:`CertificateStore` (serial numbers,
issued certificates, revocations, CRL numbers). ``InMemoryCertificateStore`` is the software
default for tests and the dev PKI; ``directory`` provides the database-backed store that all
workers share. Issuance is two-phase: the to-be-signed certificate is prepared and checked
(``_lint``), and only then signed and recorded, so nothing half-signed ever exists.

Revocation is immediate: OCSP (through :func:`signing.ocsp.store_status_lookup`) and CRLs read the
store, so they say "revoked" as soon as :meth:`CertificateAuthority.revoke` returns.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from license_core.clock import Clock, utc
from license_core.errors import ConfigurationError, NotFound, ValidationFailed
from license_core.oids import (
    ORGANIZATION_IDENTIFIER_OID,
    POLICY_OIDS,
    CertificateRole,
    holder_serial_number,
    organization_identifier,
)

__all__ = [
    "REVOCATION_REASONS",
    "RevocationEntry",
    "CertificateRecord",
    "CertificateStore",
    "InMemoryCertificateStore",
    "CertificateAuthority",
    "issuer_key",
    "parse_reason",
]

_YEAR = timedelta(days=365)
_ORG_ID = x509.ObjectIdentifier(ORGANIZATION_IDENTIFIER_OID)
_SERIAL_NUMBER = x509.ObjectIdentifier("2.5.4.5")
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

#: RFC 5280 reason names accepted by :meth:`CertificateAuthority.revoke` (``x509.ReasonFlags``
#: member names; ``remove_from_crl`` is for delta CRLs and not offered).
REVOCATION_REASONS: tuple[str, ...] = (
    "unspecified", "key_compromise", "ca_compromise", "affiliation_changed", "superseded",
    "cessation_of_operation", "certificate_hold", "privilege_withdrawn", "aa_compromise",
)


def parse_reason(reason: str | x509.ReasonFlags) -> x509.ReasonFlags:
    """Accept ``"key_compromise"``, ``"keyCompromise"``, ``"key-compromise"`` or the enum.

    Raises:
        ValidationFailed: not an RFC 5280 revocation reason.
    """
    if isinstance(reason, x509.ReasonFlags):
        return reason
    text = str(reason).strip()
    for flag in x509.ReasonFlags:
        if text in (flag.name, flag.value) or text.replace("-", "_").lower() == flag.name:
            if flag.name in REVOCATION_REASONS:
                return flag
    raise ValidationFailed(f"unknown revocation reason {reason!r}; use one of "
                           f"{', '.join(REVOCATION_REASONS)}", field="reason")


def issuer_key(issuer: x509.Name | x509.Certificate) -> str:
    """The key under which a store files certificates of one issuer: its RFC 4514 DN."""
    name = issuer.subject if isinstance(issuer, x509.Certificate) else issuer
    return name.rfc4514_string()


@dataclass(frozen=True)
class RevocationEntry:
    """One revoked certificate, as the store records it."""

    serial: int
    issuer: str  # issuer_key() of the issuing CA
    revoked_at: datetime
    reason: str  # x509.ReasonFlags member name, e.g. "key_compromise"

    @property
    def reason_flag(self) -> x509.ReasonFlags:
        return x509.ReasonFlags[self.reason]


@dataclass(frozen=True)
class CertificateRecord:
    """An issued certificate with its bookkeeping."""

    certificate: x509.Certificate
    role: CertificateRole
    label: str | None
    issuer_code: str | None

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    @property
    def issuer(self) -> str:
        return issuer_key(self.certificate.issuer)


@runtime_checkable
class CertificateStore(Protocol):
    """What a CA (and the OCSP/CRL publishers) need to remember.

    Issuers are identified by ``issuer_key()`` strings (the CA's RFC 4514 subject).

    Implementations must be safe for concurrent use by several workers: ``next_serial`` never
    returns a serial already returned or recorded, ``next_crl_number`` is strictly increasing per
    issuer, and a ``revoke`` is visible to every later ``revocation_status``/``revoked_serials``.
    """

    def next_serial(self) -> int:
        """A fresh positive serial number (< 2**159), unique across the store."""

    def record_certificate(self, certificate: x509.Certificate, *, role: CertificateRole,
                           label: str | None = None, issuer_code: str | None = None) -> None:
        """Remember an issued certificate (idempotent for the same certificate)."""

    def find_certificate(self, serial: int, issuer: str) -> CertificateRecord | None:
        """The recorded certificate with this serial from this issuer, or ``None`` (unknown)."""

    def revoke(self, serial: int, issuer: str, *, at: datetime, reason: str) -> RevocationEntry:
        """Record a revocation; if already revoked, return the existing entry unchanged."""

    def revocation_status(self, serial: int, issuer: str) -> RevocationEntry | None:
        """The revocation of this certificate, or ``None`` if it is not revoked."""

    def revoked_serials(self, issuer: str) -> Sequence[RevocationEntry]:
        """Every revocation recorded for this issuer (for CRLs)."""

    def next_crl_number(self, issuer: str) -> int:
        """The next CRL number for this issuer (1, 2, 3, ...)."""


class InMemoryCertificateStore:
    """A process-local :class:`CertificateStore` (tests, dev tools). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._certs: dict[tuple[str, int], CertificateRecord] = {}
        self._serials: set[int] = set()
        self._revoked: dict[tuple[str, int], RevocationEntry] = {}
        self._crl_numbers: dict[str, int] = {}

    def next_serial(self) -> int:
        with self._lock:
            while True:
                # 127 random bits with the top bit of 16 bytes clear: positive, RFC 5280-sized.
                serial = secrets.randbits(127) | (1 << 120)
                if serial not in self._serials:
                    self._serials.add(serial)
                    return serial

    def record_certificate(self, certificate: x509.Certificate, *, role: CertificateRole,
                           label: str | None = None, issuer_code: str | None = None) -> None:
        record = CertificateRecord(certificate, CertificateRole(role), label, issuer_code)
        with self._lock:
            self._serials.add(record.serial)
            self._certs[(record.issuer, record.serial)] = record

    def find_certificate(self, serial: int, issuer: str) -> CertificateRecord | None:
        with self._lock:
            return self._certs.get((issuer, serial))

    def records(self) -> list[CertificateRecord]:
        with self._lock:
            return list(self._certs.values())

    def revoke(self, serial: int, issuer: str, *, at: datetime, reason: str) -> RevocationEntry:
        with self._lock:
            existing = self._revoked.get((issuer, serial))
            if existing is not None:
                return existing
            entry = RevocationEntry(serial, issuer, utc(at), parse_reason(reason).name)
            self._revoked[(issuer, serial)] = entry
            return entry

    def revocation_status(self, serial: int, issuer: str) -> RevocationEntry | None:
        with self._lock:
            return self._revoked.get((issuer, serial))

    def revoked_serials(self, issuer: str) -> list[RevocationEntry]:
        with self._lock:
            return [e for (i, _), e in self._revoked.items() if i == issuer]

    def next_crl_number(self, issuer: str) -> int:
        with self._lock:
            number = self._crl_numbers.get(issuer, 0) + 1
            self._crl_numbers[issuer] = number
            return number


class CertificateAuthority:
    """Issues end-entity certificates under one CA certificate and publishes its CRL.

    ``base_url`` is written into the certificates (AIA OCSP ``{base_url}/pki/ocsp``, caIssuers
    ``{base_url}/pki/ca/{ca_name}.crt``, CRL DP ``{base_url}/pki/crl/{ca_name}.crl``).
    """

    def __init__(self, certificate: x509.Certificate,
                 private_key: CertificateIssuerPrivateKeyTypes, *, store: CertificateStore,
                 clock: Clock, base_url: str, ca_name: str = "issuing",
                 crl_validity: timedelta = timedelta(days=1)) -> None:
        """Raises ``ConfigurationError`` if the key does not match the certificate or the
        certificate is not a CA certificate."""
        if certificate.public_key().public_bytes(*_SPKI) != private_key.public_key().public_bytes(
                *_SPKI):
            raise ConfigurationError("CA private key does not match the CA certificate")
        try:
            bc = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise ConfigurationError("the CA certificate lacks basicConstraints CA:TRUE")
        self.certificate = certificate
        self._key = private_key
        self.store = store
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.ca_name = ca_name
        self.crl_validity = crl_validity
        self.issuer = issuer_key(certificate)

    # -- issuance -----------------------------------------------------------------------------

    def issue_department_seal(self, public_key: CertificatePublicKeyTypes, *, uscc: str,
                              name: str, label: str | None = None,
                              validity: timedelta = 3 * _YEAR,
                              not_before: datetime | None = None) -> x509.Certificate:
        """A department seal certificate: CN = O = ``name``, organizationIdentifier
        ``NTRCN-<uscc>``, seal policy, keyUsage digitalSignature + nonRepudiation.

        Raises:
            ValidationFailed: bad USCC shape or empty name; validity outside the CA's.
        """
        if len(uscc) != 18 or not uscc.isalnum():
            raise ValidationFailed(f"{uscc!r} is not an 18-character USCC", field="issuer")
        if not name:
            raise ValidationFailed("department name is required", field="name")
        subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                             x509.NameAttribute(_ORG_ID, organization_identifier(uscc)),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = self._prepare(public_key, subject, CertificateRole.DEPARTMENT_SEAL,
                                validity=validity, not_before=not_before)
        builder = builder.add_extension(_key_usage(non_repudiation=True), critical=True)
        return self._sign_and_record(builder, CertificateRole.DEPARTMENT_SEAL, label=label,
                                     issuer_code=uscc)

    def issue_qr_signing_certificate(self, public_key: CertificatePublicKeyTypes, *,
                                     name: str, organization: str = "elicense",
                                     label: str | None = None,
                                     validity: timedelta = 2 * _YEAR,
                                     not_before: datetime | None = None) -> x509.Certificate:
        """A platform QR signing certificate (SPEC §7): CN ``name``, QR_SIGNING policy,
        keyUsage digitalSignature. Its ``not_after`` bounds the issue time of tokens it signs.

        Raises:
            ValidationFailed: empty name, a key that is not EC P-256 (tokens are ES256), or a
                validity outside the CA's.
        """
        if not name:
            raise ValidationFailed("the QR signing certificate needs a name", field="name")
        if (not isinstance(public_key, ec.EllipticCurvePublicKey)
                or not isinstance(public_key.curve, ec.SECP256R1)):
            raise ValidationFailed("QR tokens are ES256: the key must be EC P-256",
                                   field="public_key")
        subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = self._prepare(public_key, subject, CertificateRole.QR_SIGNING,
                                validity=validity, not_before=not_before)
        builder = builder.add_extension(_key_usage(non_repudiation=False), critical=True)
        return self._sign_and_record(builder, CertificateRole.QR_SIGNING, label=label,
                                     issuer_code=None)

    def issue_holder_certificate(self, public_key: CertificatePublicKeyTypes, *,
                                 holder_code_type: str, holder_code: str, name: str,
                                 label: str | None = None, validity: timedelta = 2 * _YEAR,
                                 not_before: datetime | None = None,
                                 email: str | None = None) -> x509.Certificate:
        """A 一证通用 certificate for a person (``111``) or an enterprise (``001``): subject
        serialNumber ``<type>-<code>``, holder policy, keyUsage digitalSignature +
        nonRepudiation, EKU clientAuth + emailProtection.

        The caller validates the holder code (``license_core.holder_codes``); this checks shape.

        Raises:
            ValidationFailed: unknown code type, code not 18 characters, empty name.
        """
        code_type = getattr(holder_code_type, "value", holder_code_type)
        if code_type not in ("111", "001"):
            raise ValidationFailed(f"holder code type must be 111 or 001, not {code_type!r}",
                                   field="holder.code_type")
        if len(holder_code) != 18 or not holder_code.isalnum():
            raise ValidationFailed("holder code must be 18 characters", field="holder.id")
        if not name:
            raise ValidationFailed("holder name is required", field="holder.name")
        attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
        if code_type == "001":
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, name))
        attrs += [x509.NameAttribute(_SERIAL_NUMBER, holder_serial_number(code_type, holder_code)),
                  x509.NameAttribute(NameOID.COMMON_NAME, name)]
        builder = self._prepare(public_key, x509.Name(attrs), CertificateRole.HOLDER,
                                validity=validity, not_before=not_before)
        builder = (builder.add_extension(_key_usage(non_repudiation=True), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH,
                                                         ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                                  critical=False))
        if email:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        return self._sign_and_record(builder, CertificateRole.HOLDER, label=label,
                                     issuer_code=None)

    # -- revocation ---------------------------------------------------------------------------

    def revoke(self, serial: int, reason: str | x509.ReasonFlags = "unspecified", *,
               at: datetime | None = None) -> RevocationEntry:
        """Revoke a certificate this CA issued; effective at once for OCSP and CRLs.

        Revoking an already revoked certificate returns the first revocation unchanged.

        Raises:
            NotFound: this CA never issued (recorded) that serial.
            ValidationFailed: not an RFC 5280 reason.
        """
        flag = parse_reason(reason)
        if self.store.find_certificate(serial, self.issuer) is None:
            raise NotFound(f"certificate {serial:x} was not issued by {self.issuer}",
                           field="serial")
        # CRLs and OCSP carry whole seconds: floor the time so that a revocation is never
        # "in the future" of a response produced in the same second.
        when = (utc(at) if at is not None else self.clock.now()).replace(microsecond=0)
        return self.store.revoke(serial, self.issuer, at=when, reason=flag.name)

    def crl(self, at: datetime | None = None) -> x509.CertificateRevocationList:
        """A full CRL signed by this CA: revocations effective at ``at`` (default: now), a fresh
        CRL number, nextUpdate ``at + crl_validity``."""
        when = (utc(at) if at is not None else self.clock.now()).replace(microsecond=0)
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.certificate.subject)
                   .last_update(when)
                   .next_update(when + self.crl_validity)
                   .add_extension(x509.CRLNumber(self.store.next_crl_number(self.issuer)),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self._key.public_key()), critical=False))
        for entry in sorted(self.store.revoked_serials(self.issuer), key=lambda e: e.serial):
            if entry.revoked_at > when:
                continue
            revoked = (x509.RevokedCertificateBuilder().serial_number(entry.serial)
                       .revocation_date(entry.revoked_at.replace(microsecond=0)))
            if entry.reason != "unspecified":  # RFC 5280 §5.3.1: omit rather than unspecified
                revoked = revoked.add_extension(x509.CRLReason(entry.reason_flag), critical=False)
            builder = builder.add_revoked_certificate(revoked.build())
        return builder.sign(self._key, signature_hash_for(self._key))

    # -- internals ----------------------------------------------------------------------------

    def _prepare(self, public_key: CertificatePublicKeyTypes, subject: x509.Name,
                 role: CertificateRole, *, validity: timedelta,
                 not_before: datetime | None) -> x509.CertificateBuilder:
        start = (utc(not_before) if not_before is not None else self.clock.now()).replace(
            microsecond=0)
        end = min(start + validity, self.certificate.not_valid_after_utc)
        self._lint(public_key, start, end)
        aia = x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(f"{self.base_url}/pki/ocsp")),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(
                                       f"{self.base_url}/pki/ca/{self.ca_name}.crt")),
        ])
        crldp = x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(
                f"{self.base_url}/pki/crl/{self.ca_name}.crl")],
            relative_name=None, reasons=None, crl_issuer=None)])
        return (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(self.certificate.subject)
                .public_key(public_key)
                .serial_number(self.store.next_serial())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self._key.public_key()), critical=False)
                .add_extension(x509.CertificatePolicies([x509.PolicyInformation(
                    x509.ObjectIdentifier(POLICY_OIDS[role]), None)]), critical=False)
                .add_extension(aia, critical=False)
                .add_extension(crldp, critical=False))

    def _lint(self, public_key: CertificatePublicKeyTypes, start: datetime,
              end: datetime) -> None:
        if isinstance(public_key, rsa.RSAPublicKey):
            if public_key.key_size < 2048:
                raise ValidationFailed("RSA keys must have at least 2048 bits", field="public_key")
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if not isinstance(public_key.curve, (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)):
                raise ValidationFailed("EC keys must be on P-256, P-384 or P-521",
                                       field="public_key")
        elif not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise ValidationFailed("unsupported public key type", field="public_key")
        if start < self.certificate.not_valid_before_utc or end <= start:
            raise ValidationFailed("validity must lie inside the CA certificate's validity",
                                   field="validity")

    def _sign_and_record(self, builder: x509.CertificateBuilder, role: CertificateRole, *,
                         label: str | None, issuer_code: str | None) -> x509.Certificate:
        cert = builder.sign(self._key, signature_hash_for(self._key))
        self.store.record_certificate(cert, role=role, label=label, issuer_code=issuer_code)
        return cert


def _key_usage(*, non_repudiation: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=non_repudiation,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=False, crl_sign=False, encipher_only=False,
                         decipher_only=False)


def signature_hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.HashAlgorithm | None:
    """The hash to sign certificates, CRLs and OCSP responses with this key (None: Ed25519)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()
