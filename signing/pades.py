"""PAdES sealing of e-licenses and signing of e-official documents (pyHanko).

Two operations, both at PAdES B-LT (signature timestamp + OCSP/CRL in the DSS) and B-LTA by
default (a document timestamp after the DSS update):

* :meth:`LicenseSigner.seal_license` — a **certification** signature with DocMDP "no changes"
  (P=1): an e-license must not change after its seal, except long-term-validation updates.
* :meth:`LicenseSigner.sign_document` — an **approval** signature in a new field, appended as an
  incremental update, so earlier signatures stay valid (countersignatures). Documents certified
  with "no changes" are refused (:class:`~license_core.errors.DocumentLocked`).

Revocation material is handed in (DER OCSP responses and CRLs, or a callable that produces fresh
OCSP responses); the validation context used to collect it never fetches, so sealing is offline.

Every operation exists as ``async_…`` (use it from async code: pyHanko's sync API calls
``asyncio.run``) and as a sync wrapper. The sync wrapper runs ``asyncio.run`` when no event loop
is running in the calling thread; called from inside a running loop it runs the coroutine on a
private loop in a helper thread and blocks until it is done (correct, but it blocks the caller's
loop — prefer the async variant there, or call the sync one in a worker thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, TypeVar

from cryptography import x509
from PIL import Image
from pyhanko.pdf_utils.images import PdfImage
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign.fields import MDPPerm, SigFieldSpec, SigSeedSubFilter
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError, extract_ts_certs
from pyhanko.sign.validation.pdf_embedded import read_certification_data
from pyhanko.stamp import StaticStampStyle
from pyhanko_certvalidator.errors import RevokedError

from license_core.clock import utc
from license_core.errors import (
    ConfigurationError,
    DependencyUnavailable,
    DocumentLocked,
    LicenseError,
    MalformedDocument,
    SealKeyRevoked,
)

from .keys import SigningKey
from .validation_context import as_asn1_certificates, offline_validation_context

__all__ = [
    "Box",
    "OcspSource",
    "RevocationMaterial",
    "SealSpec",
    "LicenseSigner",
    "seal_license",
    "async_seal_license",
    "sign_document",
    "async_sign_document",
    "is_locked",
    "run_sync",
]

Box = tuple[float, float, float, float]
"""A rectangle ``(x1, y1, x2, y2)`` in PDF user units (points, origin bottom-left)."""

OcspSource = Callable[[x509.Certificate, x509.Certificate], bytes | None]
"""``(certificate, issuer) -> DER OCSP response`` (or ``None`` if it has no OCSP)."""

T = TypeVar("T")


class _OfflineByDesign(logging.Filter):
    """pyHanko warns when validation info is embedded without fetching; that is our design
    (the revocation material is handed in), so this one message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "fetching is not allowed" not in record.getMessage()


logging.getLogger("pyhanko.sign.signers.pdf_signer").addFilter(_OfflineByDesign())


@dataclass(frozen=True)
class RevocationMaterial:
    """What proves, at signing time, that the certificates involved are not revoked.

    ``ocsp_responses`` and ``crls`` are DER blobs; ``ocsp_source`` (optional) is asked for a
    fresh response for every non-root certificate of the signer's and the TSA's chains — an
    in-process OCSP responder plugs in here. Everything ends up in the document's DSS.
    """

    ocsp_responses: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()
    ocsp_source: OcspSource | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ocsp_responses", tuple(self.ocsp_responses))
        object.__setattr__(self, "crls", tuple(self.crls))


@dataclass(frozen=True, eq=False)
class SealSpec:
    """How a signature looks and how far it goes.

    ``box`` on page ``page`` (0-based) with ``appearance_image`` (a PIL image or PNG/JPEG bytes,
    rendered once by the caller) as the visible stamp; no ``box`` makes an invisible signature.
    ``document_timestamp`` adds the B-LTA document timestamp. ``field_name`` ``None`` picks
    ``Seal`` for e-licenses and a fresh unique name for document signatures.
    ``bytes_reserved`` is the space kept for the CMS (no dry-run signature is made).
    ``key_usage`` is what the signer certificate must allow (``None``: ``non_repudiation`` for
    seals, ``digital_signature`` for document signatures).
    """

    box: Box | None = None
    appearance_image: Image.Image | bytes | None = None
    page: int = 0
    field_name: str | None = None
    reason: str | None = None
    location: str | None = None
    document_timestamp: bool = True
    bytes_reserved: int = 16384
    md_algorithm: str = "sha256"
    key_usage: frozenset[str] | None = None

    def __post_init__(self) -> None:
        img = self.appearance_image
        if isinstance(img, (bytes, bytearray, memoryview)):
            try:
                loaded = Image.open(io.BytesIO(bytes(img)))
                loaded.load()
            except (OSError, ValueError) as exc:
                raise ConfigurationError(f"appearance image cannot be decoded: {exc}") from exc
            object.__setattr__(self, "appearance_image", loaded)
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if x2 <= x1 or y2 <= y1:
                raise ConfigurationError(f"signature box {self.box} is empty")
            object.__setattr__(self, "box", tuple(float(v) for v in self.box))


def is_locked(pdf_bytes: bytes) -> bool:
    """Whether the PDF is certified with DocMDP "no changes" (P=1).

    Raises :class:`MalformedDocument` if the PDF cannot be parsed.
    """
    return _certification_permission(_open_writer(pdf_bytes)) is MDPPerm.NO_CHANGES


class LicenseSigner:
    """Seals e-licenses and signs documents with one signing identity.

    Build it once per identity and reuse it: it holds the ready signer, the certificate chain,
    the timestamper and the revocation material. ``chain`` lists the issuing CAs above the
    signer's certificate; ``trust_roots`` default to the self-signed certificates in ``chain``
    (the TSA must chain to one of them too). Safe for concurrent use.

    Raises :class:`ConfigurationError` if no trust root is known.
    """

    def __init__(self, signer: Signer | SigningKey, *, timestamper: TimeStamper,
                 chain: Sequence[x509.Certificate] = (),
                 revocation: RevocationMaterial | None = None,
                 trust_roots: Sequence[x509.Certificate] | None = None) -> None:
        if isinstance(signer, SigningKey):
            chain = tuple(chain) or signer.chain
            signer = signer.signer
        self._signer = signer
        self._chain = tuple(chain)
        self._timestamper = timestamper
        self._revocation = revocation or RevocationMaterial()
        roots = tuple(trust_roots) if trust_roots is not None else tuple(
            c for c in self._chain if c.issuer == c.subject)
        if not roots:
            raise ConfigurationError("no trust root: pass trust_roots or include the root in chain")
        self._roots = roots
        # pyHanko wants the intermediates in the signer's registry to build the path / embed them
        known = {c.dump() for c in signer.cert_registry}
        missing = [c for c in as_asn1_certificates(self._chain) if c.dump() not in known]
        if missing:
            signer.cert_registry.register_multiple(missing)

    # -- public API ---------------------------------------------------------------------------
    async def async_seal_license(self, pdf_bytes: bytes, spec: SealSpec, *,
                                 at: datetime | None = None) -> bytes:
        """Certify ``pdf_bytes`` with DocMDP "no changes" at PAdES B-LT(A); return the sealed PDF.

        Raises :class:`MalformedDocument` (unreadable or encrypted PDF),
        :class:`DocumentLocked` (the PDF is already signed: a certification must come first),
        :class:`SealKeyRevoked` (the seal certificate is revoked at ``at``),
        :class:`DependencyUnavailable` (the TSA failed),
        :class:`ConfigurationError` (chain, trust or revocation material incomplete).
        """
        writer = _open_writer(pdf_bytes)
        if _certification_permission(writer) is MDPPerm.NO_CHANGES:
            raise DocumentLocked("the document is certified with no changes allowed")
        if writer.prev.embedded_signatures:
            raise DocumentLocked("the document is already signed; an e-license seal "
                                 "(certification) must be the first signature")
        spec = replace(spec, field_name=spec.field_name or "Seal")
        return await self._sign(writer, spec, certify=True, at=at,
                                key_usage=spec.key_usage or frozenset({"non_repudiation"}))

    async def async_sign_document(self, pdf_bytes: bytes, spec: SealSpec, *,
                                  at: datetime | None = None) -> bytes:
        """Add an approval signature in a new field at PAdES B-LT(A) as an incremental update.

        Earlier signatures stay valid. Raises :class:`DocumentLocked` (certified with no changes
        allowed, or the field name is taken), :class:`MalformedDocument`,
        :class:`SealKeyRevoked`, :class:`DependencyUnavailable`, :class:`ConfigurationError`.
        """
        writer = _open_writer(pdf_bytes)
        if _certification_permission(writer) is MDPPerm.NO_CHANGES:
            raise DocumentLocked("the document is certified with no changes allowed")
        name = spec.field_name or f"Signature-{uuid.uuid4().hex[:12]}"
        if any(s.field_name == name for s in writer.prev.embedded_signatures):
            raise DocumentLocked(f"signature field {name!r} is already signed")
        spec = replace(spec, field_name=name)
        return await self._sign(writer, spec, certify=False, at=at,
                                key_usage=spec.key_usage or frozenset({"digital_signature"}))

    def seal_license(self, pdf_bytes: bytes, spec: SealSpec, *,
                     at: datetime | None = None) -> bytes:
        """Sync variant of :meth:`async_seal_license` (see the module docstring)."""
        return run_sync(lambda: self.async_seal_license(pdf_bytes, spec, at=at))

    def sign_document(self, pdf_bytes: bytes, spec: SealSpec, *,
                      at: datetime | None = None) -> bytes:
        """Sync variant of :meth:`async_sign_document` (see the module docstring)."""
        return run_sync(lambda: self.async_sign_document(pdf_bytes, spec, at=at))

    # -- mechanism ----------------------------------------------------------------------------
    async def _sign(self, writer: IncrementalPdfFileWriter, spec: SealSpec, *, certify: bool,
                    at: datetime | None, key_usage: frozenset[str]) -> bytes:
        moment = utc(at) if at is not None else datetime.now(timezone.utc)
        assert spec.field_name is not None
        try:
            vc = await self._validation_context(moment, spec.md_algorithm)
            meta = PdfSignatureMetadata(
                field_name=spec.field_name,
                md_algorithm=spec.md_algorithm,
                certify=certify,
                docmdp_permissions=MDPPerm.NO_CHANGES if certify else MDPPerm.FILL_FORMS,
                subfilter=SigSeedSubFilter.PADES,
                embed_validation_info=True,
                use_pades_lta=spec.document_timestamp,
                validation_context=vc,
                signer_key_usage=set(key_usage),
                reason=spec.reason,
                location=spec.location,
            )
            field_spec = SigFieldSpec(
                sig_field_name=spec.field_name, on_page=spec.page,
                box=spec.box,
            )
            pdf_signer = PdfSigner(meta, signer=self._signer, timestamper=self._timestamper,
                                   stamp_style=_stamp_style(spec), new_field_spec=field_spec)
            out = await _sign_pdf(pdf_signer, writer, spec.bytes_reserved, moment)
        except LicenseError:
            raise
        except TimestampRequestError as exc:
            raise DependencyUnavailable(f"timestamp authority failed: {exc}") from exc
        except SigningError as exc:
            if _caused_by(exc, RevokedError):
                raise SealKeyRevoked(f"the signer's certificate is revoked: {exc.__cause__}"
                                     ) from exc
            raise ConfigurationError(f"signing failed: {_describe(exc)}") from exc
        except (PdfError, KeyError, IndexError) as exc:
            # e.g. page index out of range, broken page tree discovered while writing
            raise MalformedDocument(f"cannot sign this PDF: {exc}") from exc
        return out

    async def _validation_context(self, moment: datetime, md_algorithm: str) -> Any:
        rev = self._revocation
        ocsps = list(rev.ocsp_responses)
        other = list(self._chain)
        if rev.ocsp_source is not None:
            tsa_certs = await self._tsa_certificates(md_algorithm)
            other.extend(tsa_certs)
            signer_cert = x509.load_der_x509_certificate(self._signer.signing_cert.dump())
            for cert in (signer_cert, *self._chain, *tsa_certs):
                if cert.issuer == cert.subject:
                    continue
                issuer = next((c for c in (*other, *self._roots) if c.subject == cert.issuer),
                              None)
                if issuer is None:
                    continue
                resp = rev.ocsp_source(cert, issuer)
                if resp is not None:
                    ocsps.append(resp)
        try:
            return offline_validation_context(
                trust_roots=self._roots, other_certs=other, ocsp_responses=ocsps,
                crls=rev.crls, at=moment, revocation_mode="hard-fail")
        except ValueError as exc:
            raise ConfigurationError(f"undecodable revocation material: {exc}") from exc

    async def _tsa_certificates(self, md_algorithm: str) -> list[x509.Certificate]:
        # pyHanko caches this dummy response and reuses it for its own TSA path validation.
        dummy = await self._timestamper.async_dummy_response(md_algorithm)
        certs = extract_ts_certs(dummy, self._timestamper.cert_registry)
        return [x509.load_der_x509_certificate(c.dump()) for c in certs]


async def _sign_pdf(pdf_signer: PdfSigner, writer: IncrementalPdfFileWriter, bytes_reserved: int,
                    moment: datetime) -> bytes:
    """pyHanko's ``PdfSigner.async_sign_pdf`` with an explicit signing time.

    Same steps as upstream (0.38); the only difference is ``system_time``, which upstream takes
    from the wall clock and we take from ``at``.
    """
    session = pdf_signer.init_signing_session(writer)
    session.system_time = moment
    validation_info = await session.perform_presign_validation(writer)
    tbs = session.prepare_tbs_document(validation_info=validation_info,
                                       bytes_reserved=bytes_reserved)

    prepared, output = tbs.digest_tbs_document(in_place=False, output=None)
    post = await tbs.perform_signature(
        document_digest=prepared.document_digest,
        pdf_cms_signed_attrs=PdfCMSSignedAttributes(
            signing_time=moment,
            adobe_revinfo_attr=(None if validation_info is None
                                else validation_info.adobe_revinfo_attr),
            cades_signed_attrs=pdf_signer.signature_meta.cades_signed_attr_spec,
        ),
    )
    await post.post_signature_processing(output)
    output.seek(0)
    return output.read()


def _stamp_style(spec: SealSpec) -> StaticStampStyle:
    img = spec.appearance_image
    # A fresh PdfImage per document: it binds to one writer. The PIL image itself is shared.
    background = PdfImage(img) if isinstance(img, Image.Image) else None
    return StaticStampStyle(background=background, border_width=0, background_opacity=1.0)


def _open_writer(pdf_bytes: bytes) -> IncrementalPdfFileWriter:
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf_bytes), strict=False)
        if writer.prev.encrypted:
            raise MalformedDocument("encrypted PDFs cannot be signed here")
        writer.prev.root  # noqa: B018 - force the catalog to parse now
        _ = writer.prev.embedded_signatures
    except LicenseError:
        raise
    except Exception as exc:  # PdfReadError, PdfStreamError, ValueError, … from a hostile file
        raise MalformedDocument(f"not a readable PDF: {exc}") from exc
    return writer


def _certification_permission(writer: IncrementalPdfFileWriter) -> MDPPerm | None:
    try:
        info = read_certification_data(writer.prev)
    except Exception as exc:
        raise MalformedDocument(f"unreadable DocMDP settings: {exc}") from exc
    return None if info is None else info.permission


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _describe(exc: BaseException) -> str:
    parts = [str(exc)]
    cause = exc.__cause__
    while cause is not None and len(parts) < 4:
        parts.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__
    return " <- ".join(parts)


# -- functional API -------------------------------------------------------------------------------

async def async_seal_license(
    pdf_bytes: bytes, *, signer: Signer | SigningKey, chain: Sequence[x509.Certificate] = (),
    timestamper: TimeStamper, revocation: RevocationMaterial | None = None,
    appearance_image: Image.Image | bytes | None = None, box: Box | None = None,
    at: datetime | None = None, spec: SealSpec | None = None,
    trust_roots: Sequence[x509.Certificate] | None = None,
) -> bytes:
    """One-shot :meth:`LicenseSigner.async_seal_license` (``spec`` overrides box/image).

    Prefer a long-lived :class:`LicenseSigner` when sealing many documents.
    """
    ls, spec = _one_shot(signer, timestamper, chain, revocation, trust_roots, spec, box,
                         appearance_image)
    return await ls.async_seal_license(pdf_bytes, spec, at=at)


def _one_shot(signer: Signer | SigningKey, timestamper: TimeStamper,
              chain: Sequence[x509.Certificate], revocation: RevocationMaterial | None,
              trust_roots: Sequence[x509.Certificate] | None, spec: SealSpec | None,
              box: Box | None, appearance_image: Image.Image | bytes | None,
              ) -> tuple[LicenseSigner, SealSpec]:
    return (LicenseSigner(signer, timestamper=timestamper, chain=chain, revocation=revocation,
                          trust_roots=trust_roots),
            spec or SealSpec(box=box, appearance_image=appearance_image))


def seal_license(pdf_bytes: bytes, **kwargs: Any) -> bytes:
    """Sync variant of :func:`async_seal_license` (same keyword arguments and errors)."""
    return run_sync(lambda: async_seal_license(pdf_bytes, **kwargs))


async def async_sign_document(
    pdf_bytes: bytes, *, signer: Signer | SigningKey, chain: Sequence[x509.Certificate] = (),
    timestamper: TimeStamper, revocation: RevocationMaterial | None = None,
    appearance_image: Image.Image | bytes | None = None, box: Box | None = None,
    at: datetime | None = None, spec: SealSpec | None = None,
    trust_roots: Sequence[x509.Certificate] | None = None,
) -> bytes:
    """One-shot :meth:`LicenseSigner.async_sign_document` (``spec`` overrides box/image)."""
    ls, spec = _one_shot(signer, timestamper, chain, revocation, trust_roots, spec, box,
                         appearance_image)
    return await ls.async_sign_document(pdf_bytes, spec, at=at)


def sign_document(pdf_bytes: bytes, **kwargs: Any) -> bytes:
    """Sync variant of :func:`async_sign_document` (same keyword arguments and errors)."""
    return run_sync(lambda: async_sign_document(pdf_bytes, **kwargs))


_HELPER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="pades-sync")


def run_sync(make_coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code.

    Without a running loop in this thread: ``asyncio.run``. Inside a running loop (where
    ``asyncio.run`` would fail): on a private loop in a helper thread, blocking the caller.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    return _HELPER.submit(lambda: asyncio.run(make_coro())).result()
