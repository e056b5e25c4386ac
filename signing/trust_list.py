"""The signed trust list of SPEC §7: a compact JWS (ES256) with the signer's chain in ``x5c``.

Building is two-phase in spirit: the inputs are linted (key matches certificate, the certificate
carries the trust-list policy OID) before anything is signed. Verification checks, in order:

1. the JWS shape and header (``alg`` ES256, ``typ``, ``x5c``);
2. the ES256 signature with the key of ``x5c[0]``;
3. that ``x5c[0]`` chains through the rest of ``x5c`` to the given root at ``at``;
4. that ``x5c[0]`` carries the TRUST_LIST certificate policy OID;
5. the payload's shape, then that ``at`` falls within ``[issued_at, expires_at)``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                             encode_dss_signature)
from cryptography.x509 import verification

from license_core.canonical import canonical_json
from license_core.clock import utc
from license_core.errors import ConfigurationError
from license_core.offline import InvalidTrustList, TrustedCa, TrustListPayload
from license_core.oids import POLICY_OIDS, CertificateRole
from license_core.qr_token import QrKey

__all__ = ["TRUST_LIST_TYP", "MAX_TRUST_LIST_BYTES", "InvalidTrustList", "UntrustedTrustList",
           "TrustListExpired", "build_trust_list", "verify_trust_list", "trust_list_header",
           "has_trust_list_policy"]

TRUST_LIST_TYP = "elicense-trust-list+jws"
_ACCEPTED_TYP = {TRUST_LIST_TYP, "JWT"}
MAX_TRUST_LIST_BYTES = 1 << 20
_MAX_CHAIN = 8
_COORD = 32  # P-256 coordinate size; a JWS ES256 signature is r || s, 64 bytes (RFC 7518 §3.4)


class UntrustedTrustList(InvalidTrustList):
    """The trust list's signer does not chain to the root or is not a trust-list signer."""

    code = "untrusted_trust_list"
    title = "Untrusted trust list"


class TrustListExpired(InvalidTrustList):
    """The trust list is outside its validity (``issued_at`` … ``expires_at``)."""

    code = "trust_list_expired"
    title = "Trust list out of date"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error) as exc:
        raise InvalidTrustList(f"the trust list's {what} is not base64url") from exc


def has_trust_list_policy(cert: x509.Certificate) -> bool:
    """Whether ``cert`` carries the TRUST_LIST certificate policy OID."""
    wanted = POLICY_OIDS[CertificateRole.TRUST_LIST]
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return False
    return any(p.policy_identifier.dotted_string == wanted for p in policies)


def trust_list_header(jws: str) -> dict[str, Any]:
    """The decoded protected header of a trust list JWS (nothing is verified).

    Raises:
        InvalidTrustList: not a compact JWS with a JSON header.
    """
    parts = jws.split(".") if isinstance(jws, str) else []
    if len(parts) != 3:
        raise InvalidTrustList("a trust list is a compact JWS (three dot-separated parts)")
    try:
        header = json.loads(_b64url_decode(parts[0], "header"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidTrustList("the trust list's header is not JSON") from exc
    if not isinstance(header, dict):
        raise InvalidTrustList("the trust list's header is not a JSON object")
    return header


def build_trust_list(*, signer_cert: x509.Certificate,
                     signer_key: ec.EllipticCurvePrivateKey,
                     chain: Sequence[x509.Certificate],
                     cas: Sequence[tuple[str, x509.Certificate]],
                     qr_keys: Sequence[QrKey], issued_at: datetime,
                     lifetime: timedelta) -> str:
    """Sign a trust list as a compact JWS; ``chain`` follows the signer in ``x5c``.

    Raises:
        ConfigurationError: the key is not EC P-256 or does not match ``signer_cert``, the
            certificate lacks the TRUST_LIST policy OID, or ``lifetime`` is not positive.
    """
    if (not isinstance(signer_key, ec.EllipticCurvePrivateKey)
            or not isinstance(signer_key.curve, ec.SECP256R1)):
        raise ConfigurationError("the trust list is signed with an EC P-256 key (ES256)")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if (signer_key.public_key().public_bytes(der, spki)
            != signer_cert.public_key().public_bytes(der, spki)):
        raise ConfigurationError("the trust list key does not match its certificate")
    if not has_trust_list_policy(signer_cert):
        raise ConfigurationError(
            "the trust list signer certificate lacks the TRUST_LIST policy OID "
            f"{POLICY_OIDS[CertificateRole.TRUST_LIST]}")
    if lifetime <= timedelta(0):
        raise ConfigurationError("the trust list lifetime must be positive")
    issued_at = utc(issued_at)
    payload = TrustListPayload(
        issued_at=issued_at, expires_at=issued_at + lifetime,
        cas=tuple(TrustedCa(name=name, certificate=cert, not_after=cert.not_valid_after_utc)
                  for name, cert in cas),
        qr_keys=tuple(qr_keys))
    header = {"alg": "ES256", "typ": TRUST_LIST_TYP,
              "x5c": [base64.b64encode(c.public_bytes(der)).decode("ascii")
                      for c in [signer_cert, *chain]]}
    signing_input = (f"{_b64url(canonical_json(header))}."
                     f"{_b64url(canonical_json(payload.to_json()))}")
    r, s = decode_dss_signature(signer_key.sign(signing_input.encode("ascii"),
                                                ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")
    return f"{signing_input}.{_b64url(signature)}"


def _load_x5c(header: dict[str, Any]) -> list[x509.Certificate]:
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not 1 <= len(x5c) <= _MAX_CHAIN \
            or not all(isinstance(item, str) for item in x5c):
        raise InvalidTrustList(f"the trust list header needs an x5c of 1-{_MAX_CHAIN} certificates")
    try:
        return [x509.load_der_x509_certificate(base64.b64decode(item, validate=True))
                for item in x5c]
    except (ValueError, binascii.Error) as exc:
        raise InvalidTrustList("an x5c entry is not a base64 DER certificate") from exc


def _check_signature(signer: x509.Certificate, signing_input: bytes, signature: bytes) -> None:
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidTrustList("the trust list signer's key is not EC P-256")
    if len(signature) != 2 * _COORD:
        raise InvalidTrustList("an ES256 JWS signature is 64 bytes (r || s)")
    r = int.from_bytes(signature[:_COORD], "big")
    s = int.from_bytes(signature[_COORD:], "big")
    try:
        if r == 0 or s == 0:
            raise InvalidSignature
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise InvalidTrustList("the trust list signature does not verify") from exc


def _check_chain(certs: list[x509.Certificate], root: x509.Certificate, at: datetime) -> None:
    # cryptography's verifier does path building and validity checks; the CA side keeps the
    # RFC 5280 / Web PKI rules (basicConstraints, keyCertSign), the leaf side accepts any
    # extensions, since our signer has a custom policy OID and no TLS EKU.
    intermediates = [c for c in certs[1:] if c != root]
    verifier = (verification.PolicyBuilder()
                .store(verification.Store([root]))
                .time(at)
                .max_chain_depth(_MAX_CHAIN)
                .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                    ee_policy=verification.ExtensionPolicy.permit_all())
                .build_client_verifier())
    try:
        verifier.verify(certs[0], intermediates)
    except verification.VerificationError as exc:
        raise UntrustedTrustList(
            f"the trust list signer does not chain to the given root at {at.isoformat()}: {exc}"
        ) from exc


def verify_trust_list(jws: str, *, root: x509.Certificate, at: datetime) -> TrustListPayload:
    """Verify a trust list JWS against ``root`` at time ``at`` and return its payload.

    Raises:
        InvalidTrustList: malformed JWS, wrong algorithm or type, bad signature, malformed
            payload.
        UntrustedTrustList: the signer does not chain to ``root`` (or a certificate is outside
            its validity at ``at``), or lacks the TRUST_LIST policy OID.
        TrustListExpired: ``at`` is not within ``[issued_at, expires_at)``.
    """
    at = utc(at)
    if not isinstance(jws, str) or len(jws) > MAX_TRUST_LIST_BYTES or not jws.isascii():
        raise InvalidTrustList("the trust list is not ASCII text or is too large")
    jws = jws.strip()
    header = trust_list_header(jws)
    if header.get("alg") != "ES256":
        raise InvalidTrustList(f"trust list algorithm must be ES256, not {header.get('alg')!r}")
    if header.get("typ") not in _ACCEPTED_TYP:
        raise InvalidTrustList(f"unexpected trust list type {header.get('typ')!r}")
    if "crit" in header:
        raise InvalidTrustList("critical JWS header parameters are not supported")
    certs = _load_x5c(header)
    head_b64, payload_b64, sig_b64 = jws.split(".")
    _check_signature(certs[0], f"{head_b64}.{payload_b64}".encode("ascii"),
                     _b64url_decode(sig_b64, "signature"))
    _check_chain(certs, root, at)
    if not has_trust_list_policy(certs[0]):
        raise UntrustedTrustList(
            "the trust list signer certificate lacks the TRUST_LIST policy OID "
            f"{POLICY_OIDS[CertificateRole.TRUST_LIST]}")
    try:
        data = json.loads(_b64url_decode(payload_b64, "payload"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidTrustList("the trust list payload is not JSON") from exc
    payload = TrustListPayload.from_json(data)
    if at < payload.issued_at:
        raise TrustListExpired(f"the trust list is issued in the future ({payload.issued_at})")
    if at >= payload.expires_at:
        raise TrustListExpired(f"the trust list expired at {payload.expires_at.isoformat()}")
    return payload
