"""Offline pyHanko validation contexts: trust passed in, revocation data passed in, no fetching.

Used at sealing time (so that ``embed_validation_info`` collects exactly the OCSP responses and
CRLs we hand it, without touching the network) and by tests and verifiers that validate with the
data embedded in a document.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko_certvalidator import ValidationContext

from license_core.clock import utc

__all__ = ["RevocationMode", "offline_validation_context", "as_asn1_certificates"]

RevocationMode = Literal["soft-fail", "hard-fail", "require"]

CertLike = x509.Certificate | asn1_x509.Certificate | bytes


def _asn1_cert(cert: CertLike) -> asn1_x509.Certificate:
    if isinstance(cert, asn1_x509.Certificate):
        return cert
    if isinstance(cert, x509.Certificate):
        return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    return asn1_x509.Certificate.load(bytes(cert))


def as_asn1_certificates(certs: Iterable[CertLike]) -> list[asn1_x509.Certificate]:
    """Certificates (cryptography, asn1crypto or DER) in the asn1crypto form pyHanko uses."""
    return [_asn1_cert(c) for c in certs]


def offline_validation_context(
    *,
    trust_roots: Iterable[CertLike],
    other_certs: Iterable[CertLike] = (),
    ocsp_responses: Iterable[bytes] = (),
    crls: Iterable[bytes] = (),
    at: datetime | None = None,
    revocation_mode: RevocationMode = "hard-fail",
) -> ValidationContext:
    """A ``ValidationContext`` that never fetches: trust anchors and revocation data are given.

    ``at`` is the validation time (``None``: now). With ``hard-fail`` (the default) a
    certificate that declares an OCSP or CRL location must be covered by the data passed in,
    otherwise path validation fails. Raises ``ValueError`` on undecodable DER input.
    """
    return ValidationContext(
        trust_roots=as_asn1_certificates(trust_roots),
        other_certs=as_asn1_certificates(other_certs),
        ocsps=[asn1_ocsp.OCSPResponse.load(bytes(r)) for r in ocsp_responses],
        crls=[asn1_crl.CertificateList.load(bytes(c)) for c in crls],
        allow_fetching=False,
        revocation_mode=revocation_mode,
        moment=utc(at) if at is not None else None,
    )
