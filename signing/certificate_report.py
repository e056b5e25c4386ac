"""Facts about one certificate: chain to given trust roots, validity, status, role, identity.

Mechanism only: :func:`certificate_report` says what *is* (chained to which anchor, within its
validity at ``at``, revoked according to ``status_lookup``, which policy role, which holder code),
and the caller's policy decides what is acceptable. Trust is always passed in.

The chain is checked link by link (issuer name, signature by the issuer's key, the issuer is a CA
with ``keyCertSign``, each certificate's validity at ``at``, path length), up to a certificate
whose DER equals one of ``trust_roots``. Building the path this way, rather than with
``cryptography.x509.verification``, keeps the checks independent of WebPKI (CA/B Forum) rules
that 一证通用 certificates are not meant to satisfy.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from license_core.clock import utc
from license_core.errors import InvalidCertificate
from license_core.holder_codes import (
    HolderCodeType,
    is_valid_resident_id,
    is_valid_uscc,
    mask_holder_code,
    mask_name,
)
from license_core.oids import (
    ORGANIZATION_IDENTIFIER_OID,
    SERIAL_NUMBER_OID,
    CertificateRole,
    role_for_policy,
)

from .ocsp import CertStatus, StatusLookup

__all__ = [
    "ChainStatus",
    "HolderIdentity",
    "CertificateReport",
    "certificate_report",
    "load_certificate",
    "load_certificate_bundle",
    "masked_subject",
    "MAX_CERTIFICATE_BYTES",
]

MAX_CERTIFICATE_BYTES = 64 * 1024  # a certificate is a few KiB; more is not a certificate
_MAX_DEPTH = 8
_SERIAL_NUMBER = x509.ObjectIdentifier(SERIAL_NUMBER_OID)
_ORG_ID = x509.ObjectIdentifier(ORGANIZATION_IDENTIFIER_OID)


class ChainStatus(str, enum.Enum):
    TRUSTED = "trusted"  # a valid path to one of the trust roots
    NO_PATH = "no_path"  # no issuer found among the given certificates: a foreign CA
    BAD_SIGNATURE = "bad_signature"  # an issuer with the right name did not sign it
    INVALID_CA = "invalid_ca"  # an issuer that is not a CA, or path length exceeded
    CA_NOT_VALID = "ca_not_valid"  # an issuing CA outside its validity at ``at``


@dataclass(frozen=True)
class HolderIdentity:
    """The 一证通用 identity in a certificate's subject (serialNumber ``111-…``/``001-…``)."""

    code_type: HolderCodeType
    code: str
    name: str
    code_valid: bool  # the check character holds

    @property
    def masked_code(self) -> str:
        return mask_holder_code(self.code)

    @property
    def public_name(self) -> str:
        """Persons' names are masked in public answers; enterprise names are public."""
        return mask_name(self.name) if self.code_type is HolderCodeType.RESIDENT_ID else self.name


@dataclass(frozen=True)
class CertificateReport:
    """Facts about a certificate at time ``at``. ``chain`` runs from the certificate itself up
    to the trust anchor (or as far as a path was found)."""

    certificate: x509.Certificate
    at: datetime
    chain: tuple[x509.Certificate, ...]
    chain_status: ChainStatus
    chain_detail: str | None
    not_before: datetime
    not_after: datetime
    status: CertStatus  # from status_lookup; UNKNOWN when untrusted or not looked up
    revoked_at: datetime | None
    revocation_reason: str | None
    policy_oids: tuple[str, ...]
    role: CertificateRole | None
    holder: HolderIdentity | None
    organization_identifier: str | None
    common_name: str | None
    problems: tuple[str, ...] = field(default=())

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    @property
    def trusted(self) -> bool:
        return self.chain_status is ChainStatus.TRUSTED

    @property
    def not_yet_valid(self) -> bool:
        return self.at < self.not_before

    @property
    def expired(self) -> bool:
        return self.at > self.not_after

    @property
    def within_validity(self) -> bool:
        return not self.not_yet_valid and not self.expired

    @property
    def revoked(self) -> bool:
        return self.status is CertStatus.REVOKED

    @property
    def issuer_code(self) -> str | None:
        """The USCC of ``organizationIdentifier`` ``NTRCN-<USCC>`` (department seals)."""
        value = self.organization_identifier
        if value and value.startswith("NTRCN-"):
            return value[len("NTRCN-"):]
        return None

    @property
    def valid(self) -> bool:
        """Trusted, within validity, known and not revoked, and a sound holder code if any."""
        return (self.trusted and self.within_validity and self.status is CertStatus.GOOD
                and (self.holder is None or self.holder.code_valid))


# -- loading -----------------------------------------------------------------------------------


def load_certificate(data: bytes | str) -> x509.Certificate:
    """One certificate from PEM or DER.

    Raises:
        InvalidCertificate: empty, too large, or not a certificate.
    """
    certs = _load_certificates(data)
    return certs[0]


def load_certificate_bundle(data: bytes, *, password: bytes | None = None
                            ) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """A certificate and any further certificates shipped with it, from PEM (the first is the
    subject, the rest its chain), DER or PKCS#12 (``password`` may be needed).

    Raises:
        InvalidCertificate: none of these formats, or a PKCS#12 with a wrong password.
    """
    if not data:
        raise InvalidCertificate("the file is empty", field="certificate")
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN") or _looks_like_single_der(data):
        certs = _load_certificates(data, limit=None)
        return certs[0], tuple(certs[1:])
    try:
        p12 = pkcs12.load_pkcs12(data, password)
    except (ValueError, TypeError) as exc:
        detail = "not a PEM, DER or PKCS#12 certificate"
        if password is None:
            detail += " (a PKCS#12 file needs --password)"
        else:
            detail += " (or the PKCS#12 password is wrong)"
        raise InvalidCertificate(detail, field="certificate") from exc
    if p12.cert is None:
        raise InvalidCertificate("the PKCS#12 file holds no certificate", field="certificate")
    return p12.cert.certificate, tuple(c.certificate for c in p12.additional_certs)


def _looks_like_single_der(data: bytes) -> bool:
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return False
    return True


def _load_certificates(data: bytes | str, *, limit: int | None = MAX_CERTIFICATE_BYTES
                       ) -> list[x509.Certificate]:
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    if not raw.strip():
        raise InvalidCertificate("no certificate given", field="certificate")
    if limit is not None and len(raw) > limit:
        raise InvalidCertificate(f"a certificate is at most {limit} bytes", field="certificate")
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            certs = x509.load_pem_x509_certificates(raw)
        else:
            certs = [x509.load_der_x509_certificate(raw)]
        for cert in certs:  # touch lazily parsed fields: a broken one raises here, not later
            cert.subject, cert.issuer, cert.not_valid_after_utc, cert.extensions
            cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidCertificate(f"not a valid X.509 certificate: {_short(exc)}",
                                 field="certificate") from exc
    if not certs:
        raise InvalidCertificate("no certificate given", field="certificate")
    return certs


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


# -- the report --------------------------------------------------------------------------------


def certificate_report(certificate: x509.Certificate, *, trust_roots: Sequence[x509.Certificate],
                       intermediates: Iterable[x509.Certificate] = (),
                       at: datetime, status_lookup: StatusLookup | None = None
                       ) -> CertificateReport:
    """Facts about ``certificate`` at ``at``; never raises for a parsed certificate.

    ``status_lookup(issuer_cert, serial)`` is asked about every non-anchor certificate of a
    trusted chain; the report's status is the leaf's, except that a revoked intermediate makes
    the leaf revoked too.
    """
    at = utc(at)
    problems: list[str] = []
    chain, chain_status, chain_detail = _build_chain(certificate, trust_roots,
                                                     list(intermediates), at)
    status, revoked_at, reason = CertStatus.UNKNOWN, None, None
    if chain_status is ChainStatus.TRUSTED and status_lookup is not None:
        status, revoked_at, reason = _status(chain, status_lookup, problems)
    policies = _policy_oids(certificate, problems)
    roles = [r for r in (role_for_policy(o) for o in policies) if r is not None]
    role = roles[0] if len(roles) == 1 else None
    if len(roles) > 1:
        problems.append("several elicense policy OIDs: no single role")
    return CertificateReport(
        certificate=certificate, at=at, chain=tuple(chain), chain_status=chain_status,
        chain_detail=chain_detail, not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc, status=status, revoked_at=revoked_at,
        revocation_reason=reason, policy_oids=tuple(policies), role=role,
        holder=_holder_identity(certificate.subject, problems),
        organization_identifier=_attribute(certificate.subject, _ORG_ID),
        common_name=_attribute(certificate.subject, NameOID.COMMON_NAME),
        problems=tuple(problems))


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _is_ca(cert: x509.Certificate) -> tuple[bool, int | None]:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        return False, None
    if not bc.ca:
        return False, None
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            return False, None
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        return False, None
    return True, bc.path_length


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, ValueError (name mismatch), TypeError (key type)
        return False
    return True


def _in_validity(cert: x509.Certificate, at: datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def _build_chain(leaf: x509.Certificate, roots: Sequence[x509.Certificate],
                 intermediates: list[x509.Certificate], at: datetime
                 ) -> tuple[list[x509.Certificate], ChainStatus, str | None]:
    root_ders = {_der(r) for r in roots}
    chain = [leaf]
    current = leaf
    cas_below = 0  # intermediate CAs between the leaf and the current issuer (path length)
    failure: tuple[ChainStatus, str] | None = None
    for _ in range(_MAX_DEPTH):
        if _der(current) in root_ders:
            if current is leaf:
                return chain, ChainStatus.TRUSTED, "the certificate is itself a trust anchor"
            return chain, ChainStatus.TRUSTED, None
        # Prefer anchors, then the shipped certificates; skip ones already on the path (loops).
        candidates = [c for c in (*roots, *intermediates)
                      if c.subject == current.issuer and all(c != x for x in chain)]
        if not candidates:
            return chain, failure[0] if failure else ChainStatus.NO_PATH, (
                failure[1] if failure else
                f"no trusted issuer {current.issuer.rfc4514_string()!r} for "
                f"{current.subject.rfc4514_string()!r}")
        issuer = next((c for c in candidates if _signed_by(current, c)), None)
        if issuer is None:
            return chain, ChainStatus.BAD_SIGNATURE, (
                f"{current.subject.rfc4514_string()!r} is not signed by the key of "
                f"{current.issuer.rfc4514_string()!r}")
        is_ca, path_length = _is_ca(issuer)
        if not is_ca:
            return chain + [issuer], ChainStatus.INVALID_CA, (
                f"{issuer.subject.rfc4514_string()!r} is not a CA certificate")
        if path_length is not None and cas_below > path_length:
            return chain + [issuer], ChainStatus.INVALID_CA, (
                f"path length constraint of {issuer.subject.rfc4514_string()!r} exceeded")
        if not _in_validity(issuer, at):
            return chain + [issuer], ChainStatus.CA_NOT_VALID, (
                f"CA certificate {issuer.subject.rfc4514_string()!r} is not valid at "
                f"{at.isoformat()}")
        if current is not leaf:
            cas_below += 1
        chain.append(issuer)
        current = issuer
    return chain, ChainStatus.INVALID_CA, "certificate path too long"


def _status(chain: list[x509.Certificate], lookup: StatusLookup, problems: list[str]
            ) -> tuple[CertStatus, datetime | None, str | None]:
    leaf_status: tuple[CertStatus, datetime | None, str | None] = (CertStatus.UNKNOWN, None, None)
    # Every certificate below the anchor, issued by the next one up.
    for index in range(len(chain) - 1):
        cert, issuer = chain[index], chain[index + 1]
        try:
            info = lookup(issuer, cert.serial_number)
        except Exception as exc:  # a broken lookup is a fact to report, not a crash
            problems.append(f"status lookup failed: {_short(exc)}")
            return CertStatus.UNKNOWN, None, None
        if index == 0:
            leaf_status = (info.status, info.revoked_at, info.reason)
        elif info.status is CertStatus.REVOKED:
            problems.append(f"CA certificate {cert.subject.rfc4514_string()!r} is revoked")
            return CertStatus.REVOKED, info.revoked_at, info.reason
    return leaf_status


def _policy_oids(cert: x509.Certificate, problems: list[str]) -> list[str]:
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:
        problems.append(f"unreadable certificatePolicies: {_short(exc)}")
        return []
    return [p.policy_identifier.dotted_string for p in policies]


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _holder_identity(subject: x509.Name, problems: list[str]) -> HolderIdentity | None:
    serial = _attribute(subject, _SERIAL_NUMBER)
    if not serial or len(serial) < 5 or serial[3] != "-" or serial[:3] not in ("111", "001"):
        return None
    code_type = HolderCodeType(serial[:3])
    code = serial[4:].strip().upper()
    ok = is_valid_resident_id(code) if code_type is HolderCodeType.RESIDENT_ID \
        else is_valid_uscc(code)
    if not ok:
        problems.append(f"subject serialNumber {code_type.value}-{mask_holder_code(code)} "
                        "fails its check character")
    name = _attribute(subject, NameOID.COMMON_NAME) or _attribute(
        subject, NameOID.ORGANIZATION_NAME) or ""
    return HolderIdentity(code_type, code, name, ok)


def masked_subject(name: x509.Name) -> str:
    """The RFC 4514 subject with holder codes masked (serialNumber) and, for persons, the
    common name masked too: the form public answers may show."""
    serial = _attribute(name, _SERIAL_NUMBER)
    person = bool(serial and serial.startswith("111-"))
    rdns = []
    for rdn in reversed(name.rdns):  # RFC 4514 lists the most specific RDN first
        parts = []
        for attr in rdn:
            value = attr.value if isinstance(attr.value, str) else attr.value.decode(
                "utf-8", "replace")
            if attr.oid == _SERIAL_NUMBER:
                prefix, sep, code = value.partition("-")
                value = f"{prefix}-{mask_holder_code(code)}" if sep else mask_holder_code(value)
            elif person and attr.oid in (NameOID.COMMON_NAME, NameOID.GIVEN_NAME,
                                         NameOID.SURNAME, NameOID.PSEUDONYM):
                value = mask_name(value)
            else:
                parts.append(attr.rfc4514_string())
                continue
            parts.append(x509.NameAttribute(attr.oid, value).rfc4514_string())
        rdns.append("+".join(parts))
    return ",".join(rdns)
