"""The signed QR token of SPEC §7: COSE_Sign1 (ES256) over a lean CBOR claims map.

``token = base64url-no-padding(zlib(CBOR tag 18 [protected, {}, payload, signature]))``

* protected header: ``{1: -7 (ES256), 4: kid}``; ``kid`` = first 8 bytes of SHA-256 of the QR
  signing certificate (DER);
* payload: a CBOR map with integer keys ``1`` license identifier, ``2`` issued-at (epoch s),
  ``3`` valid-to (epoch day, optional), ``4`` masked holder name, ``5`` data digest (16 bytes);
  presentation tokens add ``6`` expiry (epoch s) and ``7`` an 8-byte nonce;
* signature: raw ``r || s`` (64 bytes, RFC 9053) over the RFC 9052 ``Sig_structure``
  ``["Signature1", protected, b"", payload]``.

Decoding is strict and bounded (token length, decompressed size): anything that is not a
well-formed token raises :class:`InvalidToken`. Verification returns *facts*
(:class:`VerifiedToken`); a well-formed token with a bad signature or an expired presentation is
not an exception.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
import secrets
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                             encode_dss_signature)

from .canonical import DATA_DIGEST_SIZE
from .clock import CHINA_TZ, utc
from .errors import InvalidIdentifier, ValidationFailed
from .identifiers import LicenseIdentifier

__all__ = [
    "token_holder_name",
    "InvalidToken", "QrClaims", "QrKey", "QrKeyStatus", "UnverifiedToken", "VerifiedToken",
    "TokenFailure", "encode_token", "decode_token", "verify_token", "kid_for_certificate",
    "token_from_payload", "qr_url", "epoch_day", "date_from_epoch_day", "kid_to_text",
    "kid_from_text", "KID_SIZE", "NONCE_SIZE", "MAX_TOKEN_CHARS", "MAX_DECOMPRESSED_BYTES",
    "DEFAULT_PRESENTATION_LIFETIME", "ALLOWED_CLOCK_SKEW",
]

KID_SIZE = 8
NONCE_SIZE = 8
MAX_TOKEN_CHARS = 1024
MAX_DECOMPRESSED_BYTES = 2048
DEFAULT_PRESENTATION_LIFETIME = timedelta(minutes=5)
# A token "issued" further than this in the verifier's future is not believed.
ALLOWED_CLOCK_SKEW = timedelta(minutes=5)

_COSE_SIGN1_TAG = 18
_COSE_ALG, _COSE_KID, _ES256 = 1, 4, -7
_SIG_SIZE = 64
_P256_ORDER_BYTES = 32
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_EPOCH_SECONDS = 2**40
_MAX_EPOCH_DAY = date(9999, 12, 31).toordinal() - date(1970, 1, 1).toordinal()
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MAX_NAME_CHARS = 64

# Claim keys of the payload map.
_C_ID, _C_IAT, _C_VALID_TO, _C_NAME, _C_DIGEST, _C_EXP, _C_NONCE = range(1, 8)


class InvalidToken(ValidationFailed):
    """The input is not a well-formed QR token (garbage, oversized, wrong structure)."""

    code = "invalid_token"
    title = "Invalid QR token"


class QrKeyStatus(str, enum.Enum):
    ACTIVE = "active"
    RETIRED = "retired"


class TokenFailure(str, enum.Enum):
    """Why a well-formed token is not authentic (first failing check, in this order)."""

    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    KEY_NOT_VALID_AT_ISSUANCE = "key_not_valid_at_issuance"
    ISSUED_IN_FUTURE = "issued_in_future"


def epoch_day(day: date) -> int:
    """Days since 1970-01-01 (the encoding of claim ``3``)."""
    return day.toordinal() - _EPOCH_ORDINAL


def date_from_epoch_day(value: int) -> date:
    """Inverse of :func:`epoch_day`."""
    return date.fromordinal(value + _EPOCH_ORDINAL)


def kid_to_text(kid: bytes) -> str:
    """A key id as written in the trust list and in reports: base64url without padding."""
    return base64.urlsafe_b64encode(kid).rstrip(b"=").decode("ascii")


def kid_from_text(text: str) -> bytes:
    """Inverse of :func:`kid_to_text`.

    Raises:
        ValidationFailed: not base64url of 8 bytes.
    """
    try:
        kid = _b64url_decode(text)
    except ValueError as exc:
        raise ValidationFailed(f"key id {text!r} is not base64url", field="kid") from exc
    if len(kid) != KID_SIZE:
        raise ValidationFailed(f"key id must be {KID_SIZE} bytes", field="kid")
    return kid


def token_holder_name(name: str) -> str:
    """Claim 4, the masked holder name, kept short so the printed symbol stays small: a person's
    surname (``张*``), an organisation's first two characters (``深圳*``)."""
    name = name.strip()
    if len(name) <= 1:
        return name
    return name[:2 if len(name) > 4 else 1] + "*"


def kid_for_certificate(cert: bytes | x509.Certificate) -> bytes:
    """The COSE ``kid`` of a QR signing certificate: SHA-256 of its DER, first 8 bytes."""
    der = cert.public_bytes(serialization.Encoding.DER) if isinstance(cert, x509.Certificate) \
        else bytes(cert)
    return hashlib.sha256(der).digest()[:KID_SIZE]


@dataclass(frozen=True, slots=True)
class QrClaims:
    """The payload of a QR token. Times are epoch seconds; ``valid_to_day`` an epoch day."""

    license_id: str
    issued_at: int
    valid_to_day: int | None
    holder_name_masked: str
    data_digest: bytes
    expires_at: int | None = None
    nonce: bytes | None = None

    def __post_init__(self) -> None:
        _check_claims(self)

    @property
    def is_presentation(self) -> bool:
        """A presentation (亮证) token: it carries a nonce and expires."""
        return self.expires_at is not None

    @property
    def valid_to(self) -> date | None:
        return None if self.valid_to_day is None else date_from_epoch_day(self.valid_to_day)

    def for_presentation(self, *, at: datetime,
                         lifetime: timedelta = DEFAULT_PRESENTATION_LIFETIME,
                         nonce: bytes | None = None) -> "QrClaims":
        """A presentation token's claims: issued ``at``, expiring after ``lifetime``.

        Raises:
            InvalidToken: a non-positive lifetime or a nonce that is not 8 bytes.
        """
        issued = int(utc(at).timestamp())
        return replace(self, issued_at=issued,
                       expires_at=issued + int(lifetime.total_seconds()),
                       nonce=secrets.token_bytes(NONCE_SIZE) if nonce is None else nonce)

    def to_cbor_map(self) -> dict[int, Any]:
        claims: dict[int, Any] = {_C_ID: self.license_id, _C_IAT: self.issued_at}
        if self.valid_to_day is not None:
            claims[_C_VALID_TO] = self.valid_to_day
        claims[_C_NAME] = self.holder_name_masked
        claims[_C_DIGEST] = self.data_digest
        if self.expires_at is not None:
            claims[_C_EXP] = self.expires_at
        if self.nonce is not None:
            claims[_C_NONCE] = self.nonce
        return claims

    @classmethod
    def from_cbor_map(cls, claims: Any) -> "QrClaims":
        """Raises: InvalidToken: not a claims map of the shape above."""
        if not isinstance(claims, Mapping):
            raise InvalidToken("the token payload is not a map")
        unknown = [k for k in claims if not (type(k) is int and _C_ID <= k <= _C_NONCE)]
        if unknown:
            raise InvalidToken(f"unknown claim keys {unknown[:3]!r}")
        for key in (_C_ID, _C_IAT, _C_NAME, _C_DIGEST):
            if key not in claims:
                raise InvalidToken(f"claim {key} is missing")
        return cls(license_id=claims[_C_ID], issued_at=claims[_C_IAT],
                   valid_to_day=claims.get(_C_VALID_TO),
                   holder_name_masked=claims[_C_NAME], data_digest=claims[_C_DIGEST],
                   expires_at=claims.get(_C_EXP), nonce=claims.get(_C_NONCE))


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass: refuse it


def _check_claims(c: QrClaims) -> None:
    if not isinstance(c.license_id, str):
        raise InvalidToken("claim 1 (license identifier) must be text")
    try:
        LicenseIdentifier.parse(c.license_id)
    except InvalidIdentifier as exc:
        raise InvalidToken(f"claim 1: {exc.detail}") from exc
    if not _is_int(c.issued_at) or not 0 <= c.issued_at < _MAX_EPOCH_SECONDS:
        raise InvalidToken("claim 2 (issued-at) must be epoch seconds")
    if c.valid_to_day is not None and (not _is_int(c.valid_to_day)
                                       or not 0 <= c.valid_to_day <= _MAX_EPOCH_DAY):
        raise InvalidToken("claim 3 (valid-to) must be an epoch day")
    if (not isinstance(c.holder_name_masked, str)
            or not 1 <= len(c.holder_name_masked) <= _MAX_NAME_CHARS):
        raise InvalidToken("claim 4 (masked holder name) must be 1-64 characters of text")
    if not isinstance(c.data_digest, bytes) or len(c.data_digest) != DATA_DIGEST_SIZE:
        raise InvalidToken(f"claim 5 (data digest) must be {DATA_DIGEST_SIZE} bytes")
    if (c.expires_at is None) != (c.nonce is None):
        raise InvalidToken("a presentation token carries both an expiry (6) and a nonce (7)")
    if c.expires_at is not None:
        if not _is_int(c.expires_at) or not c.issued_at < c.expires_at < _MAX_EPOCH_SECONDS:
            raise InvalidToken("claim 6 (expiry) must be epoch seconds after issued-at")
        if not isinstance(c.nonce, bytes) or len(c.nonce) != NONCE_SIZE:
            raise InvalidToken(f"claim 7 (nonce) must be {NONCE_SIZE} bytes")


@dataclass(frozen=True, slots=True)
class QrKey:
    """A QR verification key as published in the trust list.

    ``not_after`` bounds *signing*: a token is accepted only if it was issued inside
    ``[not_before, not_after]``; a retired key keeps verifying the tokens it signed.
    """

    kid: bytes
    public_key: ec.EllipticCurvePublicKey
    not_before: datetime
    not_after: datetime
    status: QrKeyStatus = QrKeyStatus.ACTIVE
    alg: str = "ES256"

    def __post_init__(self) -> None:
        if not isinstance(self.kid, bytes) or len(self.kid) != KID_SIZE:
            raise ValidationFailed(f"a QR key id is {KID_SIZE} bytes", field="kid")
        if (not isinstance(self.public_key, ec.EllipticCurvePublicKey)
                or not isinstance(self.public_key.curve, ec.SECP256R1)):
            raise ValidationFailed("a QR key is an EC P-256 public key", field="public_key")
        if self.alg != "ES256":
            raise ValidationFailed(f"unsupported QR key algorithm {self.alg!r}", field="alg")
        object.__setattr__(self, "status", QrKeyStatus(self.status))
        object.__setattr__(self, "not_before", utc(self.not_before))
        object.__setattr__(self, "not_after", utc(self.not_after))
        if self.not_after <= self.not_before:
            raise ValidationFailed("a QR key's not_after must follow its not_before")

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, *,
                         status: QrKeyStatus | str = QrKeyStatus.ACTIVE) -> "QrKey":
        """The QR key of a QR signing certificate (kid, key and validity from the certificate).

        Raises:
            ValidationFailed: the certificate's key is not EC P-256.
        """
        public_key = cert.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ValidationFailed("a QR key is an EC P-256 public key", field="public_key")
        return cls(kid=kid_for_certificate(cert), public_key=public_key,
                   not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                   status=QrKeyStatus(status))

    def signed_within_validity(self, issued_at: int) -> bool:
        return int(self.not_before.timestamp()) <= issued_at <= int(self.not_after.timestamp())


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A well-formed token whose signature has not been checked yet."""

    claims: QrClaims
    key_id: bytes
    protected: bytes
    payload: bytes
    signature: bytes

    @property
    def sig_structure(self) -> bytes:
        """The RFC 9052 ``Sig_structure`` the signature is over."""
        return _sig_structure(self.protected, self.payload)


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """Facts about a token checked offline against a set of QR keys at time ``at``.

    ``signature_valid`` is the cryptographic check alone; :attr:`signature_ok` is what reports
    show: a known key, a valid signature and an issue time inside the key's validity.
    ``expired`` concerns the presentation expiry (claim 6) only; ``license_expired`` compares
    the license's valid-to day (claim 3) with ``at``'s date in China.
    """

    claims: QrClaims
    key_id: bytes
    key_known: bool
    signature_valid: bool
    issued_within_key_validity: bool
    issued_in_future: bool
    expired: bool
    license_expired: bool
    key_status: QrKeyStatus | None
    verified_at: datetime

    @property
    def failure(self) -> TokenFailure | None:
        if not self.key_known:
            return TokenFailure.UNKNOWN_KEY
        if not self.signature_valid:
            return TokenFailure.BAD_SIGNATURE
        if not self.issued_within_key_validity:
            return TokenFailure.KEY_NOT_VALID_AT_ISSUANCE
        if self.issued_in_future:
            return TokenFailure.ISSUED_IN_FUTURE
        return None

    @property
    def signature_ok(self) -> bool:
        return self.failure is None

    @property
    def key_id_text(self) -> str:
        return kid_to_text(self.key_id)

    @property
    def license_identifier(self) -> LicenseIdentifier:
        return LicenseIdentifier.parse(self.claims.license_id)


def _b64url_decode(text: str) -> bytes:
    if not _TOKEN_CHARS.match(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload], canonical=True)


def encode_token(claims: QrClaims, *, private_key: ec.EllipticCurvePrivateKey,
                 kid: bytes) -> str:
    """Sign ``claims`` into a token (base64url text, no padding).

    Raises:
        ValidationFailed: the key is not EC P-256 or ``kid`` is not 8 bytes.
    """
    if (not isinstance(private_key, ec.EllipticCurvePrivateKey)
            or not isinstance(private_key.curve, ec.SECP256R1)):
        raise ValidationFailed("QR tokens are signed with an EC P-256 key (ES256)")
    if not isinstance(kid, bytes) or len(kid) != KID_SIZE:
        raise ValidationFailed(f"a QR key id is {KID_SIZE} bytes", field="kid")
    protected = cbor2.dumps({_COSE_ALG: _ES256, _COSE_KID: kid}, canonical=True)
    payload = cbor2.dumps(claims.to_cbor_map(), canonical=True)
    der = private_key.sign(_sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(_P256_ORDER_BYTES, "big") + s.to_bytes(_P256_ORDER_BYTES, "big")
    message = cbor2.dumps(cbor2.CBORTag(_COSE_SIGN1_TAG, [protected, {}, payload, signature]),
                          canonical=True)
    return base64.urlsafe_b64encode(zlib.compress(message, 9)).rstrip(b"=").decode("ascii")


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_DECOMPRESSED_BYTES)
    except zlib.error as exc:
        raise InvalidToken("the token is not zlib data") from exc
    if inflater.unconsumed_tail or not inflater.eof:
        # Either more output than we accept (a zlib bomb stops here) or a truncated stream.
        raise InvalidToken("the token decompresses to too much data or is truncated")
    if inflater.unused_data:
        raise InvalidToken("trailing bytes after the token's zlib stream")
    return out


def _loads(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types (and RecursionError on deep nesting)
        raise InvalidToken(f"the {what} is not valid CBOR") from exc


def decode_token(token: str) -> UnverifiedToken:
    """Parse a token without checking its signature.

    Raises:
        InvalidToken: anything but a well-formed token (too long, not base64url, not zlib,
            decompressing past the limit, not a COSE_Sign1 ES256 message, claims of the wrong
            shape, a license identifier that does not parse).
    """
    if not isinstance(token, str) or not token:
        raise InvalidToken("empty token")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken(f"the token is longer than {MAX_TOKEN_CHARS} characters")
    try:
        compressed = _b64url_decode(token)
    except (ValueError, binascii.Error) as exc:
        raise InvalidToken("the token is not base64url") from exc
    message = _loads(_inflate(compressed), "token")
    if not isinstance(message, cbor2.CBORTag) or message.tag != _COSE_SIGN1_TAG:
        raise InvalidToken("the token is not a COSE_Sign1 message (CBOR tag 18)")
    parts = message.value
    # cbor2 decodes arrays and maps inside a tag as tuple / frozendict.
    if not isinstance(parts, (list, tuple)) or len(parts) != 4:
        raise InvalidToken("a COSE_Sign1 message has four parts")
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise InvalidToken("protected header and payload must be byte strings")
    if not isinstance(unprotected, Mapping) or len(unprotected) != 0:
        raise InvalidToken("the unprotected header must be empty")
    if not isinstance(signature, bytes) or len(signature) != _SIG_SIZE:
        raise InvalidToken(f"an ES256 signature is {_SIG_SIZE} bytes")
    header = _loads(protected, "protected header")
    if not isinstance(header, Mapping) or set(header) != {_COSE_ALG, _COSE_KID}:
        raise InvalidToken("the protected header holds exactly alg and kid")
    if header[_COSE_ALG] != _ES256 or type(header[_COSE_ALG]) is not int:
        raise InvalidToken("the token algorithm must be ES256 (-7)")
    kid = header[_COSE_KID]
    if not isinstance(kid, bytes) or len(kid) != KID_SIZE:
        raise InvalidToken(f"the key id must be {KID_SIZE} bytes")
    claims = QrClaims.from_cbor_map(_loads(payload, "payload"))
    return UnverifiedToken(claims=claims, key_id=kid, protected=protected, payload=payload,
                           signature=signature)


def _signature_valid(token: UnverifiedToken, key: QrKey) -> bool:
    r = int.from_bytes(token.signature[:_P256_ORDER_BYTES], "big")
    s = int.from_bytes(token.signature[_P256_ORDER_BYTES:], "big")
    if r == 0 or s == 0:
        return False
    try:
        key.public_key.verify(encode_dss_signature(r, s), token.sig_structure,
                              ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def verify_token(token: str, *, keys: Mapping[bytes, QrKey], at: datetime) -> VerifiedToken:
    """Check a token offline against ``keys`` (kid → key) at time ``at``; return the facts.

    A valid signature on an expired presentation, a tampered payload or an unknown key are
    reported, not raised.

    Raises:
        InvalidToken: the token is not well formed (see :func:`decode_token`).
    """
    at = utc(at)
    decoded = decode_token(token)
    claims = decoded.claims
    key = keys.get(decoded.key_id)
    signature_valid = key is not None and _signature_valid(decoded, key)
    within = key is not None and key.signed_within_validity(claims.issued_at)
    now = int(at.timestamp())
    expired = claims.expires_at is not None and now >= claims.expires_at
    license_expired = (claims.valid_to_day is not None
                       and epoch_day(at.astimezone(CHINA_TZ).date()) > claims.valid_to_day)
    return VerifiedToken(
        claims=claims, key_id=decoded.key_id, key_known=key is not None,
        signature_valid=signature_valid, issued_within_key_validity=within,
        issued_in_future=claims.issued_at > now + int(ALLOWED_CLOCK_SKEW.total_seconds()),
        expired=expired, license_expired=license_expired,
        key_status=None if key is None else key.status, verified_at=at)


def qr_url(base_url: str, token: str) -> str:
    """The text the printed QR encodes: ``<base_url>/v/<token>``."""
    return f"{base_url.rstrip('/')}/v/{token}"


def token_from_payload(payload: str) -> str:
    """The token in a scanned QR payload: a URL ending in ``/v/<token>`` or a bare token.

    Only the shape is checked here; :func:`decode_token` does the rest.

    Raises:
        InvalidToken: neither a ``…/v/<token>`` URL nor base64url text, or too long.
    """
    if not isinstance(payload, str):
        raise InvalidToken("the QR payload must be text")
    text = payload.strip()
    if len(text) > MAX_TOKEN_CHARS + 512:
        raise InvalidToken("the QR payload is too long")
    if "://" in text or "/" in text:
        try:
            path = urlsplit(text).path if "://" in text else text.split("?", 1)[0].split("#", 1)[0]
        except ValueError as exc:
            raise InvalidToken("the QR payload is not a URL") from exc
        _, sep, candidate = path.rstrip("/").rpartition("/v/")
        if not sep:
            raise InvalidToken("the QR payload is not an e-license URL (…/v/<token>)")
        text = candidate
    if not text or len(text) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.match(text):
        raise InvalidToken("the QR payload holds no token")
    return text

