"""QR verification, the signed trust list and presentation tokens (亮证) — SPEC §7.

Verification runs in numbered steps and applies the acceptance rule at exactly one step:

1. parse the payload (``…/v/<token>`` or a bare token): garbage raises :class:`InvalidToken`
   (a 422 problem), it is not a report;
2. check the token offline against the keyring (key known, ES256 signature, issued inside the
   key's validity, not issued in the future, presentation expiry) — facts, never exceptions;
3. only for an authentic token: read the registry *live* (a revocation shows at once): the
   license version, its effective status, whether the token's data digest matches the record;
4. :class:`QrAcceptancePolicy` turns the facts into an indication and sub-indication.

Verdicts (the sub-indication names the first failing check, in this order):

=================================  ===============  =================================
fact                               indication       sub_indication
=================================  ===============  =================================
unknown key id                     INDETERMINATE    NO_CERTIFICATE_CHAIN_FOUND
bad signature                      TOTAL_FAILED     SIG_CRYPTO_FAILURE
signed outside the key's validity  TOTAL_FAILED     SIG_CONSTRAINTS_FAILURE
issued in the future (clock skew)  INDETERMINATE    NOT_YET_VALID
no such license in the registry    TOTAL_FAILED     LICENSE_UNKNOWN
token data ≠ registry data         TOTAL_FAILED     LICENSE_DATA_MISMATCH
registry: revoked                  TOTAL_FAILED     LICENSE_REVOKED
registry: superseded               TOTAL_FAILED     LICENSE_SUPERSEDED
registry: expired                  TOTAL_FAILED     LICENSE_EXPIRED
registry: suspended                INDETERMINATE    LICENSE_SUSPENDED (may be resumed,
                                                    like a certificate on hold)
presentation token expired         TOTAL_FAILED     EXPIRED
everything fine                    TOTAL_PASSED     —
=================================  ===============  =================================

Public answers carry masked holder names and codes only, and only the license fields the
catalog marks ``public`` — where such a field repeats a holder's name or code, it is masked too;
the registry is not consulted (nothing about a license is shown) for a token whose signature is
not ok.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from directory import catalog as catalog_q
from directory import licenses as q
from directory.events import append_event
from directory.models import Holder
from license_core.canonical import data_digest
from license_core.clock import utc
from license_core.errors import Conflict, Forbidden, UnknownLicense, ValidationFailed
from license_core.holder_codes import mask_holder_code, mask_name
from license_core.lifecycle import LicenseStatus, effective_status
from license_core.qr_token import (DEFAULT_PRESENTATION_LIFETIME, InvalidToken, QrClaims,
                                   TokenFailure, VerifiedToken, encode_token, epoch_day,
                                   qr_url, token_from_payload, token_holder_name, verify_token)
from directory.usage import record_license_usage
from license_core.verification import Indication, SubIndication
from signing.trust_list import build_trust_list

from ..container import Container
from ..deps import Principal
from ..platform.pki import platform_pki
from ..platform.qr_keys import qr_keyring

__all__ = ["TRUST_LIST_LIFETIME", "TRUST_LIST_CACHE", "MIN_PRESENTATION_LIFETIME",
           "MAX_PRESENTATION_LIFETIME", "RegistryFacts", "QrReport", "QrAcceptancePolicy",
           "QrService", "qr_service", "qr_report_json", "decode_qr_image", "NoQrFound",
           "InvalidToken"]

TRUST_LIST_LIFETIME = timedelta(hours=24)
TRUST_LIST_CACHE = timedelta(minutes=5)
MIN_PRESENTATION_LIFETIME = timedelta(seconds=30)
MAX_PRESENTATION_LIFETIME = timedelta(minutes=15)
_PRESENTATION_MAX_QR_VERSION = 16


class NoQrFound(ValidationFailed):
    """An image or PDF in which no QR code could be decoded."""

    code = "no_qr_found"
    title = "No QR code found"


# -- facts and verdict ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryFacts:
    """What the registry says about the license a token names, read at verification time.

    ``license`` is the masked public view (None when the license is unknown)."""

    found: bool
    status: LicenseStatus | None = None
    status_reason: str | None = None
    data_matches: bool = False
    successor_id: str | None = None
    license: dict[str, Any] | None = None


@dataclass(frozen=True)
class QrReport:
    token: VerifiedToken
    registry: RegistryFacts | None  # None: not consulted (the token is not authentic)
    indication: Indication
    sub_indication: SubIndication | None
    detail: str
    verified_at: datetime

    @property
    def valid(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED


class QrAcceptancePolicy:
    """The acceptance rule for a scanned QR (table in the module docstring)."""

    _STATUS = {
        LicenseStatus.REVOKED: (Indication.TOTAL_FAILED, SubIndication.LICENSE_REVOKED,
                                "the license has been revoked"),
        LicenseStatus.SUPERSEDED: (Indication.TOTAL_FAILED, SubIndication.LICENSE_SUPERSEDED,
                                   "this version has been replaced by a newer one"),
        LicenseStatus.EXPIRED: (Indication.TOTAL_FAILED, SubIndication.LICENSE_EXPIRED,
                                "the license has expired"),
        LicenseStatus.SUSPENDED: (Indication.INDETERMINATE, SubIndication.LICENSE_SUSPENDED,
                                  "the license is suspended"),
    }
    _SIGNATURE = {
        TokenFailure.UNKNOWN_KEY: (Indication.INDETERMINATE,
                                   SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
                                   "the QR code was signed with a key this service does not "
                                   "trust"),
        TokenFailure.BAD_SIGNATURE: (Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE,
                                     "the QR code's signature does not verify (altered or "
                                     "forged)"),
        TokenFailure.KEY_NOT_VALID_AT_ISSUANCE: (Indication.TOTAL_FAILED,
                                                 SubIndication.SIG_CONSTRAINTS_FAILURE,
                                                 "the QR code claims an issue time outside its "
                                                 "signing key's validity"),
        TokenFailure.ISSUED_IN_FUTURE: (Indication.INDETERMINATE, SubIndication.NOT_YET_VALID,
                                        "the QR code claims to be issued in the future"),
    }

    def judge(self, token: VerifiedToken, registry: RegistryFacts | None,
              ) -> tuple[Indication, SubIndication | None, str]:
        failure = token.failure
        if failure is not None:
            return self._SIGNATURE[failure]
        if registry is None or not registry.found:
            return (Indication.TOTAL_FAILED, SubIndication.LICENSE_UNKNOWN,
                    "the registry has no license with this identifier")
        if not registry.data_matches:
            return (Indication.TOTAL_FAILED, SubIndication.LICENSE_DATA_MISMATCH,
                    "the QR code's data digest differs from the registry's data")
        if registry.status in self._STATUS:
            return self._STATUS[registry.status]
        if token.expired:
            return (Indication.TOTAL_FAILED, SubIndication.EXPIRED,
                    "the presentation QR code has expired; ask the holder for a new one")
        return Indication.TOTAL_PASSED, None, "the license is valid"


class _PublicMask:
    """Keeps a public data field from undoing the masking of the holder: a value that *is* a
    holder's (or co-holder's) name shows masked, and a holder code inside any text shows masked.
    (A person's licence often repeats the name in a public ``name`` field.)"""

    def __init__(self, *, names: list[str], codes: list[str]) -> None:
        self._names = {n.strip(): mask_name(n.strip()) for n in names if n and n.strip()}
        self._codes = sorted({c for c in codes if c}, key=len, reverse=True)

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text in self._names:
            return self._names[text]
        for code in self._codes:
            if code in value or code.lower() in value:
                value = value.replace(code, mask_holder_code(code)).replace(
                    code.lower(), mask_holder_code(code))
        return value


# -- the service ---------------------------------------------------------------------------------


@dataclass
class _CachedTrustList:
    fingerprint: tuple[tuple[str, str], ...]
    built: float  # time.monotonic()
    jws: str
    payload: dict[str, Any] = field(repr=False)


class QrService:
    """Verification, trust list and presentations over one container."""

    def __init__(self, container: Container, *,
                 policy: QrAcceptancePolicy | None = None) -> None:
        self.container = container
        self.policy = policy or QrAcceptancePolicy()
        self._lock = threading.Lock()
        self._trust_list: _CachedTrustList | None = None

    # -- verification -------------------------------------------------------------------------

    def verify(self, payload: Any, *, at: datetime | None = None, actor: str = "public",
               purpose: str = "verify_qr") -> QrReport:
        """Verify a scanned payload (URL or bare token) against the keyring and the registry.

        A verification that reaches a registered license writes a usage record (SPEC §8).

        Raises:
            InvalidToken: the payload is not a well-formed QR token.
        """
        when = utc(at) if at is not None else self.container.clock.now()
        token = token_from_payload(payload)
        keyring = qr_keyring(self.container)
        keys = keyring.verification_keys()
        verified = verify_token(token, keys=keys, at=when)
        if not verified.key_known:  # another worker may have rotated a moment ago
            keys = keyring.verification_keys_for(verified.key_id)
            if verified.key_id in keys:
                verified = verify_token(token, keys=keys, at=when)
        registry = self._registry(verified.claims, when) if verified.signature_ok else None
        indication, sub, detail = self.policy.judge(verified, registry)
        if registry is not None and registry.found:
            with self.container.session() as session, session.begin():
                record_license_usage(session, at=when, license_id=verified.claims.license_id,
                                     actor=actor, purpose=purpose, outcome=indication.value,
                                     detail={"sub_indication": sub.value if sub else None})
        return QrReport(token=verified, registry=registry, indication=indication,
                        sub_indication=sub, detail=detail, verified_at=when)

    def _registry(self, claims: QrClaims, at: datetime) -> RegistryFacts:
        container = self.container
        with container.session() as session:
            try:
                row = q.get_license(session, license_id=claims.license_id)
            except UnknownLicense:
                return RegistryFacts(found=False)
            status = effective_status(row.status, row.valid_to, at)
            ltype = catalog_q.get_license_type(session, code=row.type_code)
            issuer = catalog_q.get_issuer(session, code=row.issuer_code)
            holder = session.get(Holder, row.holder_id)
            code = q.holder_code(holder, cipher=container.cipher) if holder else ""
            co_holders = q.decrypt_co_holders(row.co_holders_enc, cipher=container.cipher)
            mask = _PublicMask(names=[row.holder_name, *(c["name"] for c in co_holders)],
                               codes=[code, *(c["id"] for c in co_holders)])
            fields = [spec for spec in catalog_q.field_specs(ltype) if spec.public]
            data = dict(row.data)
            public_data = {spec.key: mask(data[spec.key]) for spec in fields if spec.key in data}
            view = {
                "id": row.id,
                "type_code": row.type_code,
                "type_name": ltype.name,
                "issuer_code": row.issuer_code,
                "issuer_name": issuer.name,
                "holder_name": mask_name(row.holder_name),
                "holder": {"id": mask_holder_code(code) if code else None,
                           "name": mask_name(row.holder_name),
                           "code_type": holder.code_type if holder else None},
                "license_number": row.license_number,
                "version": f"{row.version:03d}",
                "status": status.value,
                "valid_from": row.valid_from.isoformat(),
                "valid_to": row.valid_to.isoformat() if row.valid_to else None,
                "successor_id": row.successor_id,
                "data": public_data,
                "fields": [{"key": spec.key, "label": spec.label, "value": public_data[spec.key]}
                           for spec in fields if spec.key in public_data],
            }
            try:
                matches = data_digest(data) == claims.data_digest
            except ValidationFailed:
                matches = False
            return RegistryFacts(found=True, status=status, status_reason=row.status_reason,
                                 data_matches=matches, successor_id=row.successor_id,
                                 license=view)

    # -- trust list ---------------------------------------------------------------------------

    def trust_list(self) -> tuple[str, dict[str, Any]]:
        """The signed trust list (compact JWS) and its payload, cached for a few minutes per
        process and rebuilt at once when the QR keyring changes."""
        keyring = qr_keyring(self.container)
        fingerprint = keyring.fingerprint()
        cached = self._trust_list
        if (cached is not None and cached.fingerprint == fingerprint
                and time.monotonic() - cached.built < TRUST_LIST_CACHE.total_seconds()):
            return cached.jws, cached.payload
        pki = platform_pki(self.container)
        keys = sorted(keyring.verification_keys().values(),
                      key=lambda k: (k.status.value != "active", k.not_before))
        jws = build_trust_list(signer_cert=pki.certificate("trust_list"),
                               signer_key=pki.private_key("trust_list"),
                               chain=[pki.issuing],
                               cas=[("root", pki.root), ("issuing", pki.issuing)],
                               qr_keys=keys, issued_at=self.container.clock.now(),
                               lifetime=TRUST_LIST_LIFETIME)
        body = jws.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        with self._lock:
            self._trust_list = _CachedTrustList(fingerprint, time.monotonic(), jws, payload)
        return jws, payload

    # -- presentations (亮证) -------------------------------------------------------------------

    def present(self, license_id: str, *, principal: Principal,
                lifetime: timedelta = DEFAULT_PRESENTATION_LIFETIME) -> dict[str, Any]:
        """A short-lived presentation QR for one of the holder's own licenses.

        Raises:
            Forbidden: not a holder, or the license is not the holder's.
            UnknownLicense: no such license.
            Conflict (``license_not_valid``): the license is not valid now (revoked,
                suspended, superseded, expired) — presenting it would only show a failure.
            ValidationFailed: ``lifetime`` outside 30 s … 15 min.
        """
        if principal.role != "holder":
            raise Forbidden("presentations are made by the license holder (holder login)")
        if not MIN_PRESENTATION_LIFETIME <= lifetime <= MAX_PRESENTATION_LIFETIME:
            raise ValidationFailed("lifetime_seconds must be between 30 and 900",
                                   field="lifetime_seconds")
        container = self.container
        at = container.clock.now()
        with container.session() as session, session.begin():
            row = q.get_license(session, license_id=license_id)
            owned = {r.id for r in q.licenses_of_holder(session, holder_id=principal.subject)}
            if row.id not in owned:
                raise Forbidden("this license does not belong to you")
            status = effective_status(row.status, row.valid_to, at)
            if status is not LicenseStatus.VALID:
                raise Conflict(f"the license is {status.value}; only a valid license can be "
                               "presented", code="license_not_valid")
            key = qr_keyring(container).active(at=at)
            claims = QrClaims(license_id=row.id, issued_at=int(at.timestamp()),
                              valid_to_day=epoch_day(row.valid_to) if row.valid_to else None,
                              holder_name_masked=token_holder_name(row.holder_name),
                              data_digest=data_digest(dict(row.data))
                              ).for_presentation(at=at, lifetime=lifetime)
            append_event(session, at=at, actor=principal.actor, action="license.present",
                         subject=row.id, detail={"kid": key.kid_text,
                                                 "expires_at": claims.expires_at})
        from converters.qr import qr_png  # Pillow/qrcode only when a QR is rendered
        url = qr_url(container.settings.base_url,
                     encode_token(claims, private_key=key.private_key, kid=key.kid))
        # SPEC's version ≤ 13 is for the printed symbol; a phone screen shows a somewhat larger
        # one crisply, and qrcode still picks the smallest version that fits.
        png = qr_png(url, max_version=_PRESENTATION_MAX_QR_VERSION)
        assert claims.expires_at is not None
        return {"license_id": row.id, "payload": url,
                "png_b64": base64.b64encode(png.png).decode("ascii"),
                "qr_version": png.version, "key_id": key.kid_text,
                "expires_at": _epoch_iso(claims.expires_at)}


def qr_service(container: Container) -> QrService:
    return container.singleton("qr_service", lambda: QrService(container))


# -- mapping -------------------------------------------------------------------------------------


def _epoch_iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()


def qr_report_json(report: QrReport) -> dict[str, Any]:
    """The public JSON answer of ``POST /v1/verify/qr`` (SPEC §7); masked throughout."""
    token = report.token
    claims = token.claims
    registry = report.registry
    return {
        "valid": report.valid,
        "indication": report.indication.value,
        "sub_indication": report.sub_indication.value if report.sub_indication else None,
        "detail": report.detail,
        "offline": {"signature_ok": token.signature_ok, "key_id": token.key_id_text,
                    "expired": token.expired, "key_status":
                    token.key_status.value if token.key_status else None,
                    "failure": token.failure.value if token.failure else None},
        "status": registry.status.value if registry and registry.status else None,
        "status_reason": registry.status_reason if registry else None,
        "data_matches_registry": registry.data_matches if registry and registry.found else None,
        "presentation": ({"expires_at": _epoch_iso(claims.expires_at),
                          "expired": token.expired}
                         if claims.expires_at is not None else None),
        "license": registry.license if registry and registry.found else None,
        "verified_at": report.verified_at.isoformat(),
    }


# -- decoding a QR from a picture ----------------------------------------------------------------

_PDF_DPI = 150


def decode_qr_image(data: bytes) -> str:
    """The text of the e-license QR in a PNG/JPEG image, or on page 1 of a PDF (rendered at
    150 dpi). Prefers a symbol whose text holds ``/v/`` (the verification URL).

    Raises:
        NoQrFound: the file is not a readable image/PDF or holds no QR code.
    """
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    if data[:5] == b"%PDF-":
        import pypdfium2
        try:
            pdf = pypdfium2.PdfDocument(data)
            try:
                if len(pdf) == 0:
                    raise NoQrFound("the PDF has no pages", field="image")
                image = pdf[0].render(scale=_PDF_DPI / 72).to_pil()
            finally:
                pdf.close()
        except pypdfium2.PdfiumError as exc:
            raise NoQrFound("the PDF cannot be rendered", field="image") from exc
    else:
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise NoQrFound("the file is not a PNG/JPEG image or a PDF", field="image") from exc
    found = [r.text for r in zxingcpp.read_barcodes(image.convert("L"))
             if r.format == zxingcpp.BarcodeFormat.QRCode and r.text]
    if not found:
        raise NoQrFound("no QR code could be decoded from the image", field="image")
    found.sort(key=lambda text: "/v/" not in text)
    return found[0]
