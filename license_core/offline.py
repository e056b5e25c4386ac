"""Offline QR verification with a trust list (SPEC §7), usable without the server.

The trust list's JWS is checked by ``signing.trust_list.verify_trust_list``; what it yields, a
:class:`TrustListPayload`, is all a verifier needs here. :func:`verify_qr_offline` returns a
report for every input, even a hostile one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .clock import utc
from .errors import ValidationFailed
from .qr_token import (InvalidToken, QrClaims, QrKey, QrKeyStatus, TokenFailure, kid_from_text,
                       kid_to_text, token_from_payload, verify_token)

__all__ = ["InvalidTrustList", "TrustedCa", "TrustListPayload", "OfflineQrResult",
           "verify_qr_offline", "format_time", "parse_time"]


class InvalidTrustList(ValidationFailed):
    """A trust list (JWS or payload) that is malformed, untrusted or out of date."""

    code = "invalid_trust_list"
    title = "Invalid trust list"


def format_time(value: datetime) -> str:
    """ISO 8601 UTC with a ``Z``, to the second (the trust list's time format)."""
    return utc(value).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: Any, *, field: str) -> datetime:
    """Raises: InvalidTrustList: not an ISO 8601 time with a UTC offset."""
    if not isinstance(text, str):
        raise InvalidTrustList(f"{field} must be an ISO 8601 time", field=field)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidTrustList(f"{field} is not an ISO 8601 time: {text!r}", field=field) from exc
    if value.tzinfo is None:
        raise InvalidTrustList(f"{field} must carry a time zone (UTC)", field=field)
    return utc(value)


@dataclass(frozen=True, slots=True)
class TrustedCa:
    name: str
    certificate: x509.Certificate
    not_after: datetime


@dataclass(frozen=True, slots=True)
class TrustListPayload:
    """The content of a trust list: trusted CAs and QR keys, with its own validity."""

    issued_at: datetime
    expires_at: datetime
    cas: tuple[TrustedCa, ...]
    qr_keys: tuple[QrKey, ...]

    @property
    def keys_by_id(self) -> Mapping[bytes, QrKey]:
        return {key.kid: key for key in self.qr_keys}

    def is_current(self, at: datetime) -> bool:
        return self.issued_at <= utc(at) < self.expires_at

    def to_json(self) -> dict[str, Any]:
        """The JSON payload (``GET /v1/trust-list?format=json``)."""
        return {
            "issued_at": format_time(self.issued_at),
            "expires_at": format_time(self.expires_at),
            "cas": [{"name": ca.name,
                     "certificate": ca.certificate.public_bytes(
                         serialization.Encoding.PEM).decode("ascii"),
                     "not_after": format_time(ca.not_after)} for ca in self.cas],
            "qr_keys": [{"kid": kid_to_text(key.kid), "alg": key.alg,
                         "public_key": key.public_key.public_bytes(
                             serialization.Encoding.PEM,
                             serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii"),
                         "not_before": format_time(key.not_before),
                         "not_after": format_time(key.not_after),
                         "status": key.status.value} for key in self.qr_keys],
        }

    @classmethod
    def from_json(cls, data: Any) -> "TrustListPayload":
        """Parse a trust list payload (does *not* check any signature).

        Raises:
            InvalidTrustList: a missing or malformed member.
        """
        try:
            return cls._from_json(data)
        except InvalidTrustList:
            raise
        except (ValidationFailed, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidTrustList(f"malformed trust list payload: {exc!r}") from exc

    @classmethod
    def _from_json(cls, data: Any) -> "TrustListPayload":
        if not isinstance(data, dict):
            raise InvalidTrustList("the trust list payload is not an object")
        cas = []
        for i, item in enumerate(data["cas"]):
            cert = x509.load_pem_x509_certificate(item["certificate"].encode("ascii"))
            cas.append(TrustedCa(name=str(item["name"]), certificate=cert,
                                 not_after=parse_time(item["not_after"],
                                                      field=f"cas[{i}].not_after")))
        keys = []
        for i, item in enumerate(data["qr_keys"]):
            public_key = serialization.load_pem_public_key(item["public_key"].encode("ascii"))
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise InvalidTrustList(f"qr_keys[{i}] is not an EC key")
            keys.append(QrKey(kid=kid_from_text(item["kid"]), public_key=public_key,
                              not_before=parse_time(item["not_before"],
                                                    field=f"qr_keys[{i}].not_before"),
                              not_after=parse_time(item["not_after"],
                                                   field=f"qr_keys[{i}].not_after"),
                              status=QrKeyStatus(item["status"]), alg=item.get("alg", "ES256")))
        if len({key.kid for key in keys}) != len(keys):
            raise InvalidTrustList("duplicate QR key ids")
        issued_at = parse_time(data["issued_at"], field="issued_at")
        expires_at = parse_time(data["expires_at"], field="expires_at")
        if expires_at <= issued_at:
            raise InvalidTrustList("expires_at must follow issued_at")
        return cls(issued_at=issued_at, expires_at=expires_at, cas=tuple(cas),
                   qr_keys=tuple(keys))


@dataclass(frozen=True, slots=True)
class OfflineQrResult:
    """What an offline verifier can say about a scanned QR.

    ``well_formed`` is false for garbage (``detail`` says why); the other facts are then
    false/None. ``valid_offline`` is the offline judgement only: the registry status
    (revoked, suspended, superseded) needs the server.
    """

    well_formed: bool
    signature_ok: bool
    key_id: str | None
    expired: bool
    license_expired: bool
    trust_list_current: bool
    claims: QrClaims | None
    failure: TokenFailure | None
    detail: str | None
    verified_at: datetime

    @property
    def valid_offline(self) -> bool:
        return (self.well_formed and self.signature_ok and not self.expired
                and not self.license_expired and self.trust_list_current)


def verify_qr_offline(payload: str, trust_list: TrustListPayload, *,
                      at: datetime) -> OfflineQrResult:
    """Verify a scanned QR payload (URL or bare token) against a verified trust list.

    Never raises for bad input: garbage gives ``well_formed=False``.
    """
    at = utc(at)
    current = trust_list.is_current(at)
    try:
        verified = verify_token(token_from_payload(payload), keys=trust_list.keys_by_id, at=at)
    except InvalidToken as exc:
        return OfflineQrResult(well_formed=False, signature_ok=False, key_id=None,
                               expired=False, license_expired=False,
                               trust_list_current=current, claims=None, failure=None,
                               detail=exc.detail, verified_at=at)
    failure = verified.failure
    return OfflineQrResult(well_formed=True, signature_ok=verified.signature_ok,
                           key_id=verified.key_id_text, expired=verified.expired,
                           license_expired=verified.license_expired,
                           trust_list_current=current, claims=verified.claims, failure=failure,
                           detail=None if failure is None else failure.value, verified_at=at)
