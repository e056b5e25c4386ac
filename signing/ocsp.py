"""An RFC 6960 OCSP responder: request DER in, response DER out.

The responder signs with a delegated OCSP signer certificate (EKU OCSPSigning, issued by the CA it
answers for) or with the CA's own key. Which certificate is good, revoked or unknown is a fact
supplied by ``status_lookup`` (usually :func:`store_status_lookup` over the CA's certificate
store), so a revocation shows up in the very next response. ``respond`` never raises on bad input:
a malformed request gets a ``malformedRequest`` response, a request about a CA this responder does
not serve gets ``unauthorized``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote

from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ocsp

from license_core.clock import Clock, utc
from license_core.errors import ConfigurationError, ValidationFailed

from .ca import CertificateStore, issuer_key, signature_hash_for

__all__ = [
    "CertStatus",
    "CertStatusInfo",
    "StatusLookup",
    "OcspResponder",
    "store_status_lookup",
    "decode_get_path",
    "OCSP_REQUEST_CONTENT_TYPE",
    "OCSP_RESPONSE_CONTENT_TYPE",
]

OCSP_REQUEST_CONTENT_TYPE = "application/ocsp-request"
OCSP_RESPONSE_CONTENT_TYPE = "application/ocsp-response"

_MAX_NONCE = 32  # RFC 8954 §2.1
_HASHES: tuple[type[hashes.HashAlgorithm], ...] = (hashes.SHA1, hashes.SHA256, hashes.SHA384,
                                                  hashes.SHA512)


class CertStatus(str, enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CertStatusInfo:
    """What the responder says about one certificate."""

    status: CertStatus
    revoked_at: datetime | None = None
    reason: str | None = None  # x509.ReasonFlags member name, e.g. "key_compromise"

    @classmethod
    def good(cls) -> CertStatusInfo:
        return cls(CertStatus.GOOD)

    @classmethod
    def unknown(cls) -> CertStatusInfo:
        return cls(CertStatus.UNKNOWN)

    @classmethod
    def revoked(cls, at: datetime, reason: str | None = None) -> CertStatusInfo:
        return cls(CertStatus.REVOKED, utc(at), reason)


StatusLookup = Callable[[x509.Certificate, int], CertStatusInfo]


def store_status_lookup(store: CertificateStore) -> StatusLookup:
    """A ``status_lookup`` over a certificate store: revoked if the store has a revocation,
    good if it recorded the certificate, unknown otherwise."""

    def lookup(issuer: x509.Certificate, serial: int) -> CertStatusInfo:
        key = issuer_key(issuer)
        entry = store.revocation_status(serial, key)
        if entry is not None:
            return CertStatusInfo.revoked(entry.revoked_at, entry.reason)
        if store.find_certificate(serial, key) is not None:
            return CertStatusInfo.good()
        return CertStatusInfo.unknown()

    return lookup


def decode_get_path(b64: str) -> bytes:
    """The DER request from the path of ``GET /pki/ocsp/{b64}`` (RFC 6960 appendix A.1).

    Accepts URL-encoded (``%2F``, ``%2B``, ``%3D``) or raw standard base64, missing padding, the
    URL-safe alphabet, and stray whitespace.

    Raises:
        ValidationFailed: not base64.
    """
    text = unquote(b64).strip()
    text = re.sub(r"\s+", "", text).replace("-", "+").replace("_", "/").rstrip("=")
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed("OCSP GET path is not base64", field="request") from exc
    if not data:
        raise ValidationFailed("empty OCSP request", field="request")
    return data


@dataclass(frozen=True)
class _Issuer:
    certificate: x509.Certificate
    hashes: dict[str, tuple[bytes, bytes]]  # hash name -> (name hash, key hash)


def _issuer_hashes(cert: x509.Certificate) -> dict[str, tuple[bytes, bytes]]:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    # The key hash covers the subjectPublicKey BIT STRING value, without its unused-bits byte.
    key_bits = asn1_keys.PublicKeyInfo.load(spki)["public_key"].contents[1:]
    name_der = cert.subject.public_bytes()
    out = {}
    for algo in _HASHES:
        out[algo.name] = (_digest(algo(), name_der), _digest(algo(), key_bits))
    return out


def _digest(algo: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algo)
    h.update(data)
    return h.finalize()


class OcspResponder:
    """Answers OCSP requests for the certificates of ``issuers``.

    ``responder_cert`` is either one of ``issuers`` (the CA signs its own responses) or a
    delegated signer issued by every CA in ``issuers`` with EKU OCSPSigning (it is then included
    in the response so that clients can check the delegation).
    """

    def __init__(self, responder_cert: x509.Certificate,
                 responder_key: CertificateIssuerPrivateKeyTypes, *,
                 issuers: Sequence[x509.Certificate], status_lookup: StatusLookup, clock: Clock,
                 validity: timedelta = timedelta(hours=4)) -> None:
        """Raises ``ConfigurationError`` if the key does not match, an issuer did not issue the
        responder certificate, or a delegated responder lacks the OCSPSigning EKU."""
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if responder_cert.public_key().public_bytes(*spki) != \
                responder_key.public_key().public_bytes(*spki):
            raise ConfigurationError("OCSP responder key does not match its certificate")
        if not issuers:
            raise ConfigurationError("an OCSP responder needs at least one issuer")
        self._delegated = False
        for issuer in issuers:
            if issuer == responder_cert:
                continue
            if responder_cert.issuer != issuer.subject:
                raise ConfigurationError(
                    f"OCSP responder {responder_cert.subject.rfc4514_string()} was not issued by "
                    f"{issuer.subject.rfc4514_string()}")
            try:
                responder_cert.verify_directly_issued_by(issuer)
            except Exception as exc:  # InvalidSignature, ValueError, TypeError
                raise ConfigurationError("OCSP responder certificate is not signed by "
                                         f"{issuer.subject.rfc4514_string()}") from exc
            try:
                eku = responder_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
            except x509.ExtensionNotFound:
                eku = None
            if eku is None or x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING not in eku.value:
                raise ConfigurationError("a delegated OCSP responder needs EKU OCSPSigning")
            self._delegated = True
        self.responder_cert = responder_cert
        self._key = responder_key
        self._issuers = [_Issuer(c, _issuer_hashes(c)) for c in issuers]
        self._lookup = status_lookup
        self.clock = clock
        self.validity = validity

    def respond_get(self, path: str) -> bytes:
        """The response to ``GET /pki/ocsp/{path}``; never raises on bad input."""
        try:
            request_der = decode_get_path(path)
        except ValidationFailed:
            return _error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        return self.respond(request_der)

    def respond(self, request_der: bytes) -> bytes:
        """The DER ``OCSPResponse`` to a DER ``OCSPRequest``; never raises on bad input.

        Only single-certificate requests are served (what every client sends); others are
        answered ``malformedRequest``, as are undecodable requests and nonces over 32 bytes.
        """
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            algorithm = request.hash_algorithm
            name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
            serial = request.serial_number
            nonce = _nonce(request)
        except Exception:  # cryptography raises ValueError and friends on hostile DER
            return _error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        if nonce is not None and not 0 < len(nonce) <= _MAX_NONCE:
            return _error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        issuer = self._match(algorithm, name_hash, key_hash)
        if issuer is None:
            return _error(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        now = self.clock.now().replace(microsecond=0)
        info = self._lookup(issuer.certificate, serial)
        if info.status is CertStatus.REVOKED and info.revoked_at is not None \
                and info.revoked_at > now:
            info = CertStatusInfo.good()  # a revocation dated in the future is not yet in force
        status, rev_time, rev_reason = {
            CertStatus.GOOD: (ocsp.OCSPCertStatus.GOOD, None, None),
            CertStatus.UNKNOWN: (ocsp.OCSPCertStatus.UNKNOWN, None, None),
            CertStatus.REVOKED: (ocsp.OCSPCertStatus.REVOKED,
                                 (info.revoked_at or now).replace(microsecond=0),
                                 _reason_flag(info.reason)),
        }[info.status]
        builder = (ocsp.OCSPResponseBuilder()
                   .add_response_by_hash(name_hash, key_hash, serial, algorithm, status, now,
                                         now + self.validity, rev_time, rev_reason)
                   .responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder_cert))
        if issuer.certificate != self.responder_cert:
            builder = builder.certificates([self.responder_cert])
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(self._key, signature_hash_for(self._key))
        return response.public_bytes(serialization.Encoding.DER)

    def _match(self, algorithm: hashes.HashAlgorithm, name_hash: bytes,
               key_hash: bytes) -> _Issuer | None:
        for issuer in self._issuers:
            if issuer.hashes.get(algorithm.name) == (name_hash, key_hash):
                return issuer
        return None


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _reason_flag(reason: str | None) -> x509.ReasonFlags | None:
    if reason is None or reason == "unspecified":
        return None
    try:
        return x509.ReasonFlags[reason]
    except KeyError:
        return None


def _error(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER)

