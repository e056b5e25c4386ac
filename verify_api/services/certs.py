"""一证通用 certificates: issue (CLI), verify (CLI and public API), detached CMS verification.

Trust is the platform root; intermediates are the platform's issuing CA (plus whatever the
presented file ships); status comes from the database certificate store, so a revocation is seen
by every worker at once. Public views mask holder codes everywhere, certificate subjects included;
the operator view (CLI on the service's own machine) shows them in full.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from directory.events import append_event
from directory.licenses import get_or_create_holder
from license_core.errors import UploadTooLarge, ValidationFailed
from license_core.holder_codes import HolderCodeType, normalize_holder_code
from signing.certificate_report import (
    CertificateReport,
    certificate_report,
    load_certificate,
    masked_subject,
)
from signing.cms import MAX_SIGNATURE_BYTES, CmsReport, verify_detached_cms
from signing.ocsp import store_status_lookup

from ..container import Container
from ..platform.pki import platform_pki

__all__ = ["IssuedHolderCertificate", "issue_holder_certificate", "write_pkcs12",
           "verify_certificate", "verify_certificate_pem", "public_certificate_view",
           "operator_certificate_view", "verify_cms", "public_cms_view", "verify_cms_request",
           "decode_b64", "pem_or_b64"]

_MAX_NAME = 64  # X.520 ub-common-name


@dataclass(frozen=True)
class IssuedHolderCertificate:
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]
    code_type: HolderCodeType
    holder_id: str  # the surrogate Holder id (events and records refer to this)
    pkcs12: bytes

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")


def issue_holder_certificate(container: Container, *, holder_code: str, name: str,
                             password: bytes, actor: str = "cli") -> IssuedHolderCertificate:
    """Validate the holder code, make an EC P-256 key, issue the 一证通用 certificate with the
    platform CA, and bundle key, certificate and chain as PKCS#12 under ``password``.

    Raises:
        InvalidHolderCode: neither a valid resident ID (111) nor a valid USCC (001).
        ValidationFailed: empty or over-long name, empty password.
    """
    code, code_type = normalize_holder_code(holder_code, field="holder_id")
    name = (name or "").strip()
    if not name or len(name) > _MAX_NAME:
        raise ValidationFailed(f"the name must be 1 to {_MAX_NAME} characters", field="name")
    if not password:
        raise ValidationFailed("a PKCS#12 password is required", field="password")
    pki = platform_pki(container)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.ca.issue_holder_certificate(key.public_key(), holder_code_type=code_type.value,
                                           holder_code=code, name=name)
    serial = format(cert.serial_number, "x")
    now = container.clock.now()
    with container.session() as session, session.begin():
        holder = get_or_create_holder(session, cipher=container.cipher, code=code,
                                      code_type=code_type.value, at=now)
        append_event(session, at=now, actor=actor, action="cert.issue", subject=f"cert:{serial}",
                     detail={"serial": serial, "holder": holder.id,
                             "code_type": code_type.value, "issuer": pki.ca.issuer})
        holder_id = holder.id
    blob = pkcs12.serialize_key_and_certificates(
        name=f"elicense {code_type.value} {serial}".encode(), key=key, cert=cert,
        cas=list(pki.chain), encryption_algorithm=serialization.BestAvailableEncryption(password))
    return IssuedHolderCertificate(cert, key, pki.chain, code_type, holder_id, blob)


def write_pkcs12(path: Path, data: bytes) -> None:
    """Write a key file with mode 0600 from the start (never world-readable, not even briefly).
    Replaces an existing file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- certificate verification ------------------------------------------------------------------


def verify_certificate(container: Container, certificate: x509.Certificate, *,
                       extra_certificates: Sequence[x509.Certificate] = (),
                       at: datetime | None = None) -> CertificateReport:
    """Facts about ``certificate`` against the platform root, with status from the store.

    ``extra_certificates`` (e.g. the chain inside a PKCS#12) may help build the path; they are
    never trusted by themselves.
    """
    pki = platform_pki(container)
    return certificate_report(certificate, trust_roots=[pki.root],
                              intermediates=[pki.issuing, *extra_certificates],
                              at=at or container.clock.now(),
                              status_lookup=store_status_lookup(pki.store))


def verify_certificate_pem(container: Container, pem: str) -> CertificateReport:
    """Raises InvalidCertificate for anything that is not one PEM (or base64 DER) certificate."""
    return verify_certificate(container, load_certificate(pem_or_b64(pem)))


def pem_or_b64(text: str) -> bytes:
    """PEM text as bytes; a bare base64 DER certificate is decoded."""
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
    if b"-----BEGIN" in raw or not raw.strip():
        return raw
    try:
        return base64.b64decode(b"".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        return raw


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _status_text(report: CertificateReport) -> str:
    return report.status.value if report.trusted else "unknown"


def public_certificate_view(report: CertificateReport) -> dict[str, Any]:
    """What a public answer may show: holder codes masked, persons' names masked."""
    holder = None
    if report.holder is not None:
        holder = {"code_type": report.holder.code_type.value, "code": report.holder.masked_code,
                  "name": report.holder.public_name, "code_valid": report.holder.code_valid}
    return {
        "valid": report.valid,
        "trusted": report.trusted,
        "chain_status": report.chain_status.value,
        "chain_detail": _mask_detail(report),
        "status": _status_text(report),
        "revoked_at": _iso(report.revoked_at),
        "revocation_reason": report.revocation_reason,
        "expired": report.expired,
        "not_yet_valid": report.not_yet_valid,
        "role": report.role.value if report.role else None,
        "holder": holder,
        "issuer_code": report.issuer_code,
        "serial": format(report.serial, "x"),
        "subject": masked_subject(report.certificate.subject),
        "issuer": masked_subject(report.certificate.issuer),  # self-signed: the subject
        "not_before": _iso(report.not_before),
        "not_after": _iso(report.not_after),
        "chain": [masked_subject(c.subject) for c in report.chain],
        "verified_at": _iso(report.at),
    }


def _mask_detail(report: CertificateReport) -> str | None:
    # The chain detail quotes names, which may hold a holder code (a self-signed "issuer" too).
    detail = report.chain_detail
    if detail is None:
        return None
    for name in {*(c.subject for c in report.chain), report.certificate.issuer}:
        detail = detail.replace(name.rfc4514_string(), masked_subject(name))
    return detail


def operator_certificate_view(report: CertificateReport) -> dict[str, Any]:
    """The operator's view (CLI): the same facts with the holder code and subject in full."""
    view = public_certificate_view(report)
    if report.holder is not None:
        view["holder"] = {"code_type": report.holder.code_type.value, "code": report.holder.code,
                          "name": report.holder.name, "code_valid": report.holder.code_valid}
    view["subject"] = report.certificate.subject.rfc4514_string()
    view["issuer"] = report.certificate.issuer.rfc4514_string()
    view["chain"] = [c.subject.rfc4514_string() for c in report.chain]
    view["chain_detail"] = report.chain_detail
    view["problems"] = list(report.problems)
    return view


# -- detached CMS ------------------------------------------------------------------------------


def decode_b64(value: str, *, field: str, max_bytes: int) -> bytes:
    """Standard or URL-safe base64, padding optional, whitespace ignored.

    Raises:
        UploadTooLarge: the decoded value would exceed ``max_bytes``.
        ValidationFailed: not base64.
    """
    text = "".join(value.split()) if isinstance(value, str) else ""
    if len(text) > (max_bytes * 4) // 3 + 4:
        raise UploadTooLarge(f"{field} is limited to {max_bytes} bytes", field=field)
    text = text.replace("-", "+").replace("_", "/").rstrip("=")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed(f"{field} is not base64", field=field) from exc


def verify_cms(container: Container, *, content: bytes, signature: bytes,
               at: datetime | None = None) -> CmsReport:
    """Never raises for bad input; see :func:`signing.cms.verify_detached_cms`."""
    pki = platform_pki(container)
    return verify_detached_cms(content, signature, trust_roots=[pki.root],
                               intermediates=[pki.issuing], at=at or container.clock.now(),
                               status_lookup=store_status_lookup(pki.store))


def verify_cms_request(container: Container, *, content_b64: str,
                       signature_b64: str) -> dict[str, Any]:
    """``POST /v1/verify/cms``: decode, verify, map to the public (masked) view.

    Raises:
        UploadTooLarge: content over ELICENSE_MAX_UPLOAD_MB, signature over 512 KiB.
        ValidationFailed: not base64; ``malformed_signature`` when the signature is not a
            detached CMS SignedData at all (a parsed but failing one gives ``valid: false``).
    """
    content = decode_b64(content_b64, field="content_b64",
                         max_bytes=container.settings.max_upload_bytes)
    signature = decode_b64(signature_b64, field="signature_b64", max_bytes=MAX_SIGNATURE_BYTES)
    report = verify_cms(container, content=content, signature=signature)
    if not report.parsed:
        raise ValidationFailed(f"not a detached CMS signature: {report.error}",
                               field="signature_b64", code="malformed_signature")
    return public_cms_view(report)


def public_cms_view(report: CmsReport) -> dict[str, Any]:
    signer = None
    if report.certificate is not None:
        cert = public_certificate_view(report.certificate)
        signer = {"subject": cert["subject"], "issuer": cert["issuer"], "serial": cert["serial"],
                  "role": cert["role"], "holder": cert["holder"],
                  "issuer_code": cert["issuer_code"], "status": cert["status"],
                  "chain_status": cert["chain_status"], "not_before": cert["not_before"],
                  "not_after": cert["not_after"], "certificate_valid": cert["valid"]}
    return {
        "valid": report.valid,
        "intact": report.intact,
        "signature_valid": report.signature_valid,
        "trusted": report.trusted,
        "error": report.error,
        "digest_algorithm": report.digest_algorithm,
        "signature_algorithm": report.signature_algorithm,
        "weak_algorithm": report.weak_algorithm,
        "signer": signer,
        "signer_count": report.signer_count,
        "signing_time": _iso(report.signing_time),
        "verified_at": _iso(report.certificate.at) if report.certificate else None,
    }

