"""一证通用 login: challenges, proof of possession, holder tokens and their resolver.

Flow: ``POST /v1/auth/challenge`` stores a random nonce in the database (any worker can check
it); the holder signs the nonce's UTF-8 bytes with the certificate's key; ``POST
/v1/auth/cert-login`` checks the certificate (platform root, holder policy, validity, not
revoked), the signature, and consumes the nonce in the same transaction that records the login.

Holder tokens are compact and HMAC-signed (``eht1.<payload>.<mac>``, key derived from the
installation secret), so every worker validates them; they live one hour, and end at once when
the certificate they were obtained with is revoked (the resolver reads its status).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from directory import auth_store
from directory.events import append_event
from directory.licenses import get_or_create_holder, holder_code
from directory.models import Holder
from license_core.errors import (
    CertificateRejected,
    ChallengeFailed,
    Forbidden,
    Unauthorized,
    ValidationFailed,
)
from license_core.holder_codes import mask_holder_code
from license_core.oids import CertificateRole
from signing.ca import issuer_key
from signing.certificate_report import CertificateReport, load_certificate
from signing.ocsp import CertStatus

from ..container import Container
from ..deps import Principal
from ..platform.pki import platform_pki
from .certs import pem_or_b64, verify_certificate

__all__ = ["CHALLENGE_TTL", "TOKEN_TTL", "TOKEN_PREFIX", "HolderTokens", "HolderClaims",
           "create_challenge", "cert_login", "holder_profile", "holder_token_resolver",
           "register", "verify_possession"]

CHALLENGE_TTL = timedelta(minutes=5)
TOKEN_TTL = timedelta(hours=1)
TOKEN_PREFIX = "eht1"
_MAX_TOKEN = 2048
_MAX_NONCE = 128
_MAX_SIGNATURE = 2048  # RSA-8192 signatures are 1 KiB


# -- holder tokens -----------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class HolderClaims:
    holder_id: str
    name: str
    code_type: str
    expires_at: datetime
    token_id: str
    certificate_serial: int | None  # the login certificate, so that its revocation ends the token
    certificate_issuer: str | None  # signing.ca.issuer_key of its issuer


class HolderTokens:
    """Issues and checks holder tokens with one HMAC-SHA256 key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("holder token key must be at least 32 bytes")
        self._key = key

    def _mac(self, signing_input: str) -> bytes:
        return hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()

    def issue(self, *, holder_id: str, name: str, code_type: str, at: datetime,
              certificate_serial: int | None = None,
              certificate_issuer: str | None = None) -> tuple[str, datetime]:
        expires = (at + TOKEN_TTL).replace(microsecond=0)
        claims: dict[str, Any] = {"sub": holder_id, "name": name, "ct": code_type,
                                  "iat": int(at.timestamp()), "exp": int(expires.timestamp()),
                                  "jti": _b64url(secrets.token_bytes(16))}
        if certificate_serial is not None:
            claims["cs"] = format(certificate_serial, "x")
            claims["ci"] = certificate_issuer
        payload = _b64url(json.dumps(claims, separators=(",", ":"), ensure_ascii=False,
                                     sort_keys=True).encode())
        signing_input = f"{TOKEN_PREFIX}.{payload}"
        return f"{signing_input}.{_b64url(self._mac(signing_input))}", expires

    def check(self, token: str, *, at: datetime) -> HolderClaims | None:
        """The claims of a genuine, unexpired token; ``None`` for anything else."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN:
            return None
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            return None
        try:
            mac = _unb64url(parts[2])
            if not hmac.compare_digest(mac, self._mac(f"{parts[0]}.{parts[1]}")):
                return None
            claims = json.loads(_unb64url(parts[1]))
            expires = datetime.fromtimestamp(int(claims["exp"]), tz=timezone.utc)
            serial = int(claims["cs"], 16) if claims.get("cs") else None
            result = HolderClaims(str(claims["sub"]), str(claims.get("name", "")),
                                  str(claims.get("ct", "")), expires, str(claims["jti"]),
                                  serial, claims.get("ci"))
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
            return None
        if at >= expires:
            return None
        return result


def _tokens(container: Container) -> HolderTokens:
    return container.singleton("holder_tokens",
                               lambda: HolderTokens(container.cipher.derive("holder-token")))


def holder_token_resolver(container: Container) -> Callable[[str], Principal | None]:
    """What ``deps.current_principal`` calls for a bearer token that is not an API key."""

    def resolve(token: str) -> Principal | None:
        claims = _tokens(container).check(token, at=container.clock.now())
        if claims is None:
            return None
        # Revoking the login certificate ends its tokens at once, on every worker (one
        # primary-key read; the store is never cached).
        if claims.certificate_serial is not None and claims.certificate_issuer:
            store = platform_pki(container).store
            if store.revocation_status(claims.certificate_serial,
                                       claims.certificate_issuer) is not None:
                return None
        return Principal(kind="holder", role="holder", subject=claims.holder_id,
                         name=claims.name)

    return resolve


def register(container: Container) -> None:
    """Called by ``wiring.wire``: holder tokens become valid bearer credentials."""
    container.cache["holder_token_resolver"] = holder_token_resolver(container)


# -- challenges --------------------------------------------------------------------------------


def create_challenge(container: Container) -> dict[str, Any]:
    """A fresh nonce (base64url of 32 random bytes), stored for ``CHALLENGE_TTL``."""
    now = container.clock.now()
    nonce = _b64url(secrets.token_bytes(32))
    expires = now + CHALLENGE_TTL
    with container.session() as session, session.begin():
        auth_store.add_challenge(session, nonce=nonce, at=now, expires_at=expires)
        # Housekeeping in passing: challenges that expired a day ago can no longer matter.
        auth_store.purge_challenges(session, before=now - timedelta(days=1))
    return {"nonce": nonce, "expires_at": expires.isoformat(),
            "expires_in": int(CHALLENGE_TTL.total_seconds()),
            "algorithms": ["ECDSA-SHA256 (DER or raw r||s)", "RSA-PKCS1v15-SHA256", "Ed25519"],
            "sign": "the UTF-8 bytes of the nonce string, as sent"}


# -- login -------------------------------------------------------------------------------------


def verify_possession(certificate: x509.Certificate, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` over ``message`` verifies with the certificate's key: ECDSA with
    SHA-256 (DER, or the raw ``r||s`` form WebCrypto produces), RSA PKCS#1 v1.5 with SHA-256,
    or Ed25519."""
    try:
        key = certificate.public_key()
    except Exception:  # an unsupported key type cannot prove anything
        return False
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            candidates = [signature]
            if len(signature) == 2 * size:
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                candidates.append(encode_dss_signature(r, s))
            for candidate in candidates:
                try:
                    key.verify(candidate, message, ec.ECDSA(hashes.SHA256()))
                    return True
                except (InvalidSignature, ValueError):
                    continue
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            return True
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
            return True
    except (InvalidSignature, ValueError, TypeError):
        return False
    return False


def _require_holder_certificate(report: CertificateReport) -> None:
    """The login policy: raises CertificateRejected (401) or Forbidden (403)."""
    if not report.trusted:
        raise CertificateRejected("the certificate does not chain to the platform root "
                                  f"({report.chain_status.value})", field="certificate",
                                  extra={"reason": "untrusted"})
    if report.role is not CertificateRole.HOLDER or report.holder is None:
        role = report.role.value if report.role else "none"
        raise Forbidden(f"only 一证通用 holder certificates may log in; this one has role {role}",
                        field="certificate", code="not_holder_certificate")
    if report.not_yet_valid:
        raise CertificateRejected("the certificate is not yet valid", field="certificate",
                                  extra={"reason": "not_yet_valid"})
    if report.expired:
        raise CertificateRejected("the certificate has expired", field="certificate",
                                  extra={"reason": "expired"})
    if report.status is CertStatus.REVOKED:
        raise CertificateRejected("the certificate is revoked", field="certificate",
                                  extra={"reason": "revoked"})
    if report.status is not CertStatus.GOOD:
        raise CertificateRejected("the platform has no record of this certificate",
                                  field="certificate", extra={"reason": "unknown"})
    if not report.holder.code_valid:
        raise CertificateRejected("the certificate's holder code fails its check character",
                                  field="certificate", extra={"reason": "bad_holder_code"})
    try:
        ku = report.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            raise CertificateRejected("the certificate's key may not sign (keyUsage)",
                                      field="certificate", extra={"reason": "key_usage"})
    except x509.ExtensionNotFound:
        pass


def cert_login(container: Container, *, certificate_pem: str, nonce: str,
               signature_b64: str) -> dict[str, Any]:
    """Log a holder in with a certificate and a signed challenge.

    Raises:
        InvalidCertificate (422): not a certificate.
        ValidationFailed (422): signature not base64.
        CertificateRejected (401): untrusted, expired, revoked, unknown.
        Forbidden (403, ``not_holder_certificate``): not a 一证通用 certificate.
        ChallengeFailed (401): bad signature; unknown, expired or used nonce.
    """
    certificate = load_certificate(pem_or_b64(certificate_pem))
    if not isinstance(nonce, str) or not nonce or len(nonce) > _MAX_NONCE:
        raise ChallengeFailed("unknown challenge nonce", field="nonce")
    signature = _decode_signature(signature_b64)
    now = container.clock.now()
    report = verify_certificate(container, certificate, at=now)
    _require_holder_certificate(report)
    assert report.holder is not None
    if not verify_possession(certificate, nonce.encode("utf-8"), signature):
        raise ChallengeFailed("the signature over the nonce does not verify with the "
                              "certificate's key", field="signature_b64")
    holder_ident = report.holder
    serial = format(certificate.serial_number, "x")
    with container.session() as session, session.begin():
        if not auth_store.consume_challenge(session, nonce=nonce, at=now):
            raise ChallengeFailed("the nonce is unknown, expired or already used: ask for a new "
                                  "challenge", field="nonce")
        holder = get_or_create_holder(session, cipher=container.cipher, code=holder_ident.code,
                                      code_type=holder_ident.code_type.value, at=now)
        append_event(session, at=now, actor=f"holder:{holder.id}", action="holder.login",
                     subject=holder.id, detail={"certificate_serial": serial,
                                                "code_type": holder_ident.code_type.value})
        holder_id = holder.id
    token, expires = _tokens(container).issue(
        holder_id=holder_id, name=holder_ident.name, code_type=holder_ident.code_type.value,
        at=now, certificate_serial=certificate.serial_number,
        certificate_issuer=issuer_key(certificate.issuer))
    return {"token": token, "token_type": "Bearer", "expires_at": expires.isoformat(),
            "expires_in": int(TOKEN_TTL.total_seconds()),
            "holder": {"id": holder_id, "code_type": holder_ident.code_type.value,
                       "code": holder_ident.masked_code, "name": holder_ident.name}}


def _decode_signature(value: str) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("signature_b64 is required", field="signature_b64")
    text = "".join(value.split())
    if len(text) > _MAX_SIGNATURE * 2:
        raise ValidationFailed("signature_b64 is too long for a signature", field="signature_b64")
    text = text.replace("-", "+").replace("_", "/").rstrip("=")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed("signature_b64 is not base64", field="signature_b64") from exc


def holder_profile(container: Container, principal: Principal) -> dict[str, Any]:
    """The logged-in holder as they may see themselves (code masked).

    Raises:
        Unauthorized: the holder record no longer exists (erased).
    """
    with container.session() as session:
        holder = session.get(Holder, principal.subject)
        if holder is None:
            raise Unauthorized("the holder of this token no longer exists")
        code = holder_code(holder, cipher=container.cipher)
        code_type = holder.code_type
    return {"holder": {"id": principal.subject, "code_type": code_type,
                       "code": mask_holder_code(code), "name": principal.name}}
