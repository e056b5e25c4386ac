"""Gather :class:`~license_core.verification.DocumentFacts` from an untrusted PDF with pyHanko.

This is the *mechanism* half of PDF verification (the judgement lives in
``license_core.policy``). Everything a hostile file can make pyHanko, asn1crypto or the
standard library raise is turned into facts (``parse_error`` / a signature's ``error``);
:func:`gather_document_facts` never raises for bad input.

Bounds: explicit :class:`DecodeLimits` (proportional to the input size), and
:func:`verify_bounded` / :class:`BoundedFactGatherer`, which run the gathering in a separate
worker process with an address-space limit and a wall-clock timeout (a pure-Python parser loop
cannot be interrupted in a thread). Over a bound: ``parse_error`` ``"timeout"`` / ``"memory"``.

Time model: the signer's chain (expiry, revocation) is validated *at the signing time*, which
is the signature timestamp's time when there is one (``use_signing_time``), else at ``spec.at``
(default: now). Revocation data embedded in the file (DSS, CMS revocation archival attribute) is
used retroactively, so a certificate revoked before the timestamp is reported revoked and one
revoked after it is not. The policy insists that such a timestamp is intact, valid and trusted.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import io
import logging
import multiprocessing
import multiprocessing.connection
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from license_core.oids import ORGANIZATION_IDENTIFIER_OID, CertificateRole, role_for_policy
from license_core.verification import (
    ELICENSE_EMBEDDED_FILENAME,
    ELICENSE_XMP_NAMESPACE,
    Coverage,
    DocumentFacts,
    ModificationLevel,
    PadesLevel,
    SignatureFacts,
    SignatureKind,
)

__all__ = [
    "PdfVerificationSpec",
    "gather_document_facts",
    "verify_bounded",
    "BoundedFactGatherer",
    "load_pem_anchors",
    "decode_limits_for",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_PDF_WS = b"\x00\t\n\x0c\r "
_TAIL_RE = re.compile(rb"startxref[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+%%EOF[\x00\t\n\x0c\r ]*\Z")
_USCC_RE = re.compile(r"^NTRCN-([0-9A-HJ-NPQRTUWXY]{18})$")
_WEAK_DIGESTS = ("md2", "md5", "sha1")
_MAX_EMBEDDED_FILES = 256
_MAX_LICENSE_JSON = 4 * MiB


@dataclass(frozen=True)
class PdfVerificationSpec:
    """Inputs of fact gathering. Trust is always explicit: ``trust_roots`` (DER bytes or
    ``cryptography`` certificates, normalised to DER) plus ``extra_anchors``; nothing is taken
    from the operating system. ``at``: the verification time (default: now)."""

    trust_roots: tuple[bytes, ...] = ()
    at: datetime | None = None
    extra_anchors: tuple[bytes, ...] = ()
    use_signing_time: bool = True
    #: DER CRLs the verifier vouches for as current (its own CAs' CRLs), used besides the
    #: revocation data embedded in the file: embedded data only shows the status at sealing
    #: time, so without these a seal made with a key *after* its revocation would pass.
    current_crls: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "trust_roots", _to_der_tuple(self.trust_roots))
        object.__setattr__(self, "extra_anchors", _to_der_tuple(self.extra_anchors))
        object.__setattr__(self, "current_crls", tuple(bytes(c) for c in self.current_crls))
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("PdfVerificationSpec.at must be timezone-aware")

    @property
    def anchors(self) -> tuple[bytes, ...]:
        return self.trust_roots + self.extra_anchors


def _to_der_tuple(items: Any) -> tuple[bytes, ...]:
    out: list[bytes] = []
    for item in items or ():
        if isinstance(item, (bytes, bytearray, memoryview)):
            out.append(bytes(item))
        elif hasattr(item, "public_bytes"):  # cryptography.x509.Certificate
            from cryptography.hazmat.primitives.serialization import Encoding
            out.append(item.public_bytes(Encoding.DER))
        elif hasattr(item, "dump"):  # asn1crypto certificate
            out.append(item.dump())
        else:
            raise TypeError(f"unsupported trust anchor type {type(item).__name__}")
    return tuple(out)


def load_pem_anchors(data: bytes | str) -> tuple[bytes, ...]:
    """DER certificates from PEM text, leniently: blocks that do not parse are skipped
    (some real-world certificates are not strict DER, so no strict parser is used here)."""
    from asn1crypto import x509 as asn1_x509

    text = data.decode("ascii", "replace") if isinstance(data, (bytes, bytearray)) else data
    out: list[bytes] = []
    for m in re.finditer(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text,
                         re.S):
        try:
            der = base64.b64decode("".join(m.group(1).split()))
            cert = asn1_x509.Certificate.load(der)
            _ = cert.subject.human_friendly, cert.public_key.algorithm  # force a parse
        except Exception:  # noqa: BLE001 - lenient by contract
            continue
        out.append(der)
    return tuple(out)


def decode_limits_for(size: int):
    """Explicit decode limits proportional to the input (pyHanko's defaults allow GBs)."""
    from pyhanko.pdf_utils.decode_limits import (
        DEFAULT_PURPOSE_LIMITS,
        DecodeLimits,
        DocumentDecodeBudget,
        StreamDecodeLimits,
    )

    per_stream_cap = min(64 * MiB, max(8 * MiB, 16 * size))
    return DecodeLimits(
        per_stream=StreamDecodeLimits(max_ratio=200, ratio_floor=MiB,
                                      max_output_size=per_stream_cap),
        per_purpose=dict(DEFAULT_PURPOSE_LIMITS),
        expected_size_slack=4096,
        # the diff analysis decodes the same streams once per signature and revision
        document_budget=DocumentDecodeBudget(base_allowance=96 * MiB, max_ratio=60),
    )


# --- fact gathering ---------------------------------------------------------------------------


def gather_document_facts(pdf: bytes, spec: PdfVerificationSpec) -> DocumentFacts:
    """Facts about ``pdf`` under ``spec``. Never raises for bad input (see module doc)."""
    size = len(pdf)
    try:
        return _gather(pdf, spec)
    except MemoryError:
        return DocumentFacts.failed("memory", size=size)
    except RecursionError:
        return DocumentFacts.failed("structure too deeply nested", size=size)
    except Exception as exc:  # noqa: BLE001 - hostile input must become a fact
        return DocumentFacts.failed(_describe(exc), size=size)


def _describe(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg[:300]}" if msg else type(exc).__name__


def _tail_facts(pdf: bytes) -> tuple[int, int | None]:
    """(non-whitespace bytes after the last %%EOF, startxref value in the file's tail)."""
    idx = pdf.rfind(b"%%EOF")
    if idx < 0:
        return len(pdf.strip(_PDF_WS)) or 1, None
    trailing = len(pdf[idx + 5:].strip(_PDF_WS))
    m = _TAIL_RE.search(pdf[-4096:]) if trailing == 0 else None
    return trailing, int(m.group(1)) if m else None


def _open_reader(pdf: bytes):
    from pyhanko.pdf_utils.reader import PdfFileReader

    limits = decode_limits_for(len(pdf))
    strict_error = None
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=True, decode_limits=limits)
    except Exception as exc:  # noqa: BLE001
        strict_error = _describe(exc)
        reader = PdfFileReader(io.BytesIO(pdf), strict=False, decode_limits=limits)
        return reader, strict_error, bool(reader.xrefs.hybrid_xrefs_present)
    if reader.xrefs.hybrid_xrefs_present:
        # pyHanko validates hybrid-reference files (common from older producers) only in
        # lenient mode, where it reads the XRefStm sections too; the diff analysis still runs
        reader = PdfFileReader(io.BytesIO(pdf), strict=False, decode_limits=limits)
        return reader, None, True
    return reader, strict_error, False


def _gather(pdf: bytes, spec: PdfVerificationSpec) -> DocumentFacts:
    from pyhanko.sign.fields import enumerate_sig_fields
    from pyhanko.sign.validation import read_certification_data

    size = len(pdf)
    at = spec.at or datetime.now(timezone.utc)
    trailing, tail_startxref = _tail_facts(pdf)
    try:
        reader, strict_error, hybrid = _open_reader(pdf)
    except Exception as exc:  # noqa: BLE001
        return DocumentFacts(size=size, parse_error=_describe(exc),
                             trailing_bytes_after_eof=trailing)

    encrypted = False
    if reader.encrypt_dict:
        encrypted = True
        try:
            result = reader.decrypt(b"")
            status = getattr(result, "status", None)
            if status is not None and getattr(status, "name", "") == "FAILED":
                return DocumentFacts(size=size, parse_error="encrypted: password required",
                                     encrypted=True, trailing_bytes_after_eof=trailing)
        except Exception as exc:  # noqa: BLE001
            return DocumentFacts(size=size, parse_error=f"encrypted: {_describe(exc)}",
                                 encrypted=True, trailing_bytes_after_eof=trailing)

    tail_problem = None
    if trailing == 0:
        if tail_startxref is None:
            tail_problem = "the file does not end with 'startxref <offset> %%EOF'"
        elif tail_startxref != reader.last_startxref:
            tail_problem = "the final startxref is not the one the document is read from"
        else:
            tail_problem = _loose_bytes_before_startxref(pdf, reader.last_startxref)

    revisions = reader.xrefs.total_revisions
    docmdp = read_certification_data(reader)
    docmdp_perm = docmdp.permission.value if docmdp is not None and docmdp.permission else None
    certification_ref = None
    try:
        raw = reader.root["/Perms"].raw_get("/DocMDP")
        certification_ref = getattr(raw, "reference", None)
    except Exception:  # noqa: BLE001
        pass

    dss = _read_dss(reader)

    sig_fields: list[tuple[str, Any, Any]] = []
    for fq_name, sig_obj, sig_field in enumerate_sig_fields(reader, filled_status=True):
        sig_fields.append((fq_name, sig_obj, sig_field))

    sigs = []
    for fq_name, sig_obj_ref, sig_field in sig_fields:
        sigs.append(_signature_facts(reader, fq_name, sig_obj_ref, sig_field, spec, at, dss,
                                     certification_ref))
    sigs = _assign_pades_levels(sigs, dss)
    sigs = _confirm_changed_fields(reader, sigs)
    # read only after validation: decoding the XMP stream through pyHanko's object cache
    # breaks the historical resolvers the diff analysis needs (measured on pyHanko 0.38)
    embedded, license_json = _embedded_files(reader)
    xmp = _xmp_mentions_elicense(reader)
    metadata = license_json is not None or ELICENSE_EMBEDDED_FILENAME in embedded or xmp
    return DocumentFacts(
        size=size,
        signatures=tuple(sigs),
        strict_parse_error=strict_error,
        hybrid_xref=hybrid,
        trailing_bytes_after_eof=trailing,
        tail_problem=tail_problem,
        encrypted=encrypted,
        revisions=revisions,
        is_certified=docmdp is not None,
        docmdp_permission=docmdp_perm,
        has_dss=dss.present,
        dss_error=dss.error,
        dss_ocsp_count=len(dss.ocsps),
        dss_crl_count=len(dss.crls),
        has_elicense_metadata=metadata,
        embedded_files=tuple(embedded),
        license_json=license_json,
        xmp_elicense=xmp,
        page_qr_payloads=_page_qr_payloads(pdf) if sigs and not metadata else (),
    )


_QR_RENDER_DPI = 150
_QR_MAX_PIXELS = 4000 * 4000
_QR_MAX_PAYLOADS = 8


def _page_qr_payloads(pdf: bytes) -> tuple[str, ...]:
    """Texts of the QR codes printed on page 1 (rendered at 150 dpi, bounded in size).

    Runs inside the bounded worker like the rest of fact gathering; any rendering failure
    simply means no QR was found (the signatures are judged on their own then).
    """
    try:
        import pypdfium2
        import zxingcpp

        document = pypdfium2.PdfDocument(pdf, password="")
        try:
            if len(document) == 0:
                return ()
            page = document[0]
            width, height = page.get_size()
            scale = _QR_RENDER_DPI / 72
            if width * height * scale * scale > _QR_MAX_PIXELS:
                scale = (_QR_MAX_PIXELS / max(width * height, 1.0)) ** 0.5
            image = page.render(scale=scale).to_pil()
        finally:
            document.close()
        found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
        return tuple(r.text[:2048] for r in found[:_QR_MAX_PAYLOADS] if r.text)
    except Exception:  # noqa: BLE001 - hostile pages: no QR found is the safe answer here
        return ()


def _loose_bytes_before_startxref(pdf: bytes, xref_offset: int) -> str | None:
    """The last revision's xref section must run right up to the final ``startxref``: bytes in
    between (a loose appended object) are invisible to pyHanko but not to every reader."""
    p = pdf.rfind(b"startxref")
    if xref_offset >= p or xref_offset < 0:
        return "the final xref section does not precede startxref"
    between = _strip_trailing_comments(pdf[xref_offset:p])
    if between.startswith(b"xref"):
        t = between.rfind(b"trailer")
        if t < 0 or not between.endswith(b">>"):
            return "bytes between the final trailer and startxref"
        body = between[t:]
        if body.count(b"<<") != body.count(b">>"):
            return "bytes between the final trailer and startxref"
        return None
    if not between.endswith(b"endobj"):
        return "bytes between the final xref stream and startxref"
    return None


def _strip_trailing_comments(data: bytes) -> bytes:
    """Trailing whitespace and whole comment lines (``%iText-5.5.3``) are not content."""
    for _ in range(64):
        data = data.rstrip(_PDF_WS)
        nl = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if data[nl + 1:].startswith(b"%"):
            data = data[:nl + 1]
            continue
        break
    return data


@dataclass
class _Dss:
    present: bool = False
    error: str | None = None
    certs: list = field(default_factory=list)
    ocsps: list = field(default_factory=list)
    crls: list = field(default_factory=list)


def _read_dss(reader) -> _Dss:
    from pyhanko.sign.validation.errors import NoDSSFoundError
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    out = _Dss()
    try:
        store = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return out
    except Exception as exc:  # noqa: BLE001
        out.present, out.error = True, _describe(exc)
        return out
    out.present = True
    try:
        from asn1crypto import crl as asn1_crl
        from asn1crypto import ocsp as asn1_ocsp
        from pyhanko.pdf_utils.decode_limits import DecodePurpose

        out.certs = list(store.load_certs())
        out.ocsps = [asn1_ocsp.OCSPResponse.load(r.get_object().read_data(
            DecodePurpose.OCSP_RESPONSE)) for r in store.ocsps]
        out.crls = [asn1_crl.CertificateList.load(r.get_object().read_data(DecodePurpose.CRL))
                    for r in store.crls]
    except Exception as exc:  # noqa: BLE001
        out.error = _describe(exc)
    return out


def _embedded_files(reader) -> tuple[list[str], bytes | None]:
    names: list[str] = []
    license_json: bytes | None = None
    try:
        tree = reader.root["/Names"]["/EmbeddedFiles"]
    except Exception:  # noqa: BLE001
        return names, None
    stack = [(tree, 0)]
    seen = 0
    while stack and seen < _MAX_EMBEDDED_FILES:
        node, depth = stack.pop()
        seen += 1
        try:
            node = node.get_object()
            if depth < 16 and "/Kids" in node:
                for kid in node["/Kids"]:
                    stack.append((kid, depth + 1))
            if "/Names" in node:
                arr = node["/Names"]
                for i in range(0, len(arr) - 1, 2):
                    key = str(arr[i])
                    spec = arr[i + 1].get_object()
                    fname = str(spec.get("/UF", spec.get("/F", key)))
                    names.append(fname)
                    if ELICENSE_EMBEDDED_FILENAME in (fname, key) and license_json is None:
                        ef = spec["/EF"]
                        stream = (ef.get("/UF") or ef["/F"]).get_object()
                        data = stream.data
                        if len(data) <= _MAX_LICENSE_JSON:
                            license_json = bytes(data)
        except Exception:  # noqa: BLE001 - a broken name tree is just "no file"
            continue
    return names, license_json


def _xmp_mentions_elicense(reader) -> bool:
    try:
        meta = reader.root["/Metadata"].get_object()
        data = meta.data
    except Exception:  # noqa: BLE001
        return False
    return ELICENSE_XMP_NAMESPACE.encode() in data


# --- one signature ------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _anchor_certs(anchors: tuple[bytes, ...]) -> tuple:
    from asn1crypto import x509 as asn1_x509

    out = []
    for der in anchors:
        try:
            cert = asn1_x509.Certificate.load(der)
            _ = cert.subject.hashable, cert.public_key.algorithm
            out.append(cert)
        except Exception:  # noqa: BLE001 - a bad anchor is skipped, never trusted "a bit"
            log.warning("skipping a trust anchor that does not parse")
    return tuple(out)


@lru_cache(maxsize=4)
def _current_crls(ders: tuple[bytes, ...]) -> tuple:
    from asn1crypto import crl as asn1_crl

    out = []
    for der in ders:
        try:
            crl = asn1_crl.CertificateList.load(der)
            _ = crl["tbs_cert_list"]["issuer"].hashable  # force a parse
            out.append(crl)
        except Exception:  # noqa: BLE001 - a configuration problem, not the document's
            log.warning("skipping a current CRL that does not parse")
    return tuple(out)


def _validation_context(spec: PdfVerificationSpec, moment: datetime, dss: _Dss,
                        cms_crls: list, cms_ocsps: list):
    from pyhanko_certvalidator import ValidationContext
    from pyhanko_certvalidator.policy_decl import DisallowWeakAlgorithmsPolicy

    return ValidationContext(
        trust_roots=list(_anchor_certs(spec.anchors)),
        other_certs=list(dss.certs),
        crls=list(dss.crls) + list(cms_crls) + list(_current_crls(spec.current_crls)),
        ocsps=list(dss.ocsps) + list(cms_ocsps),
        moment=moment,
        allow_fetching=False,
        revocation_mode="soft-fail",
        # embedded revocation data is fetched after signing: judge it against the signing time
        retroactive_revinfo=True,
        # facts report cryptographic validity; the policy rejects weak algorithms itself
        algorithm_usage_policy=DisallowWeakAlgorithmsPolicy(
            weak_hash_algos=frozenset({"md2", "md5"}), rsa_key_size_threshold=1024,
            dsa_key_size_threshold=1024),
    )


def _tst_gen_time(tst_signed_data) -> datetime | None:
    try:
        info = tst_signed_data["encap_content_info"]["content"].parsed
        return info["gen_time"].native
    except Exception:  # noqa: BLE001
        return None


def _unsigned_tst_time(signer_info) -> datetime | None:
    from asn1crypto import core

    try:
        attrs = signer_info["unsigned_attrs"]
        # Not ``attrs.native``: that decodes every embedded token and certificate (~200 ms).
        if isinstance(attrs, core.Void) or not len(attrs):
            return None
        for attr in attrs:
            if attr["type"].native == "signature_time_stamp_token":
                return _tst_gen_time(attr["values"][0]["content"])
    except Exception:  # noqa: BLE001
        return None
    return None


def _cms_revinfo(signer_info) -> tuple[list, list]:
    crls: list = []
    ocsps: list = []
    try:
        attrs = signer_info["signed_attrs"]
        if attrs.native is None:
            return crls, ocsps
        for attr in attrs:
            if attr["type"].native == "adobe_revocation_info_archival":
                val = attr["values"][0]
                crls.extend(c for c in (val["crl"] or []))
                ocsps.extend(o for o in (val["ocsp"] or []))
    except Exception:  # noqa: BLE001
        pass
    return crls, ocsps


def _signer_identity(cert) -> tuple[str | None, str | None, CertificateRole | None]:
    subject = issuer_code = role = None
    try:
        subject = cert.subject.human_friendly
    except Exception:  # noqa: BLE001
        pass
    try:
        for rdn in cert.subject.chosen:
            for attr in rdn:
                if attr["type"].dotted == ORGANIZATION_IDENTIFIER_OID:
                    m = _USCC_RE.match(str(attr["value"].native).strip())
                    if m:
                        issuer_code = m.group(1)
    except Exception:  # noqa: BLE001
        pass
    try:
        for pol in cert.certificate_policies_value or ():
            r = role_for_policy(pol["policy_identifier"].dotted)
            if r is not None:
                role = r
                break
    except Exception:  # noqa: BLE001
        pass
    return subject, issuer_code, role


def _weak_algorithms(md_algorithm: str | None, mechanism: str | None, signer_cert,
                     path) -> tuple[str, ...]:
    weak: list[str] = []
    if md_algorithm and md_algorithm.lower() in _WEAK_DIGESTS:
        weak.append(f"digest:{md_algorithm.lower()}")
    if mechanism and any(d in mechanism.lower() for d in _WEAK_DIGESTS):
        weak.append(f"signature:{mechanism.lower()}")
    certs = [signer_cert]
    if path is not None:
        try:
            certs = list(path.iter_certs(include_root=False))
        except Exception:  # noqa: BLE001
            pass
    for cert in certs:
        try:
            h = cert["signature_algorithm"].hash_algo
            if h in _WEAK_DIGESTS:
                weak.append(f"certificate-signature:{h}")
        except Exception:  # noqa: BLE001
            pass
        try:
            pk = cert.public_key
            if pk.algorithm == "rsa" and pk.bit_size < 2048:
                weak.append(f"rsa-{pk.bit_size}")
        except Exception:  # noqa: BLE001
            pass
    return tuple(dict.fromkeys(weak))


def _trust_flags(indic) -> tuple[str | None, bool, bool]:
    if indic is None:
        return None, False, False
    name = getattr(indic, "name", str(indic))
    expired = name in ("EXPIRED", "OUT_OF_BOUNDS_NO_POE", "OUT_OF_BOUNDS_NOT_REVOKED")
    not_yet = name == "NOT_YET_VALID"
    return name, expired, not_yet


_SUPPORTED_SIG_SUBFILTERS = ("/adbe.pkcs7.detached", "/ETSI.CAdES.detached",
                             "/ETSI.RFC3161")


def _signature_facts(reader, fq_name: str, sig_obj_ref, sig_field, spec: PdfVerificationSpec,
                     at: datetime, dss: _Dss, certification_ref) -> SignatureFacts:
    from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

    kind = SignatureKind.SIGNATURE
    subfilter = None
    try:
        sig_obj = sig_obj_ref.get_object()
        subfilter = str(sig_obj.get("/SubFilter")) if "/SubFilter" in sig_obj else None
        if str(sig_obj.get("/Type", "/Sig")) == "/DocTimeStamp" or subfilter == "/ETSI.RFC3161":
            kind = SignatureKind.DOC_TIMESTAMP
        elif (certification_ref is not None
              and getattr(sig_obj_ref, "reference", None) == certification_ref):
            kind = SignatureKind.SEAL
    except Exception as exc:  # noqa: BLE001
        return SignatureFacts(field=fq_name, kind=kind, error=_describe(exc))
    if subfilter not in _SUPPORTED_SIG_SUBFILTERS:
        return SignatureFacts(field=fq_name, kind=kind, subfilter=subfilter,
                              error=f"unsupported signature sub-filter {subfilter}")
    try:
        emb = EmbeddedPdfSignature(reader, sig_field, fq_name)
    except Exception as exc:  # noqa: BLE001
        return SignatureFacts(field=fq_name, kind=kind, subfilter=subfilter,
                              error=f"signature container unreadable: {_describe(exc)}")
    try:
        if kind is SignatureKind.DOC_TIMESTAMP:
            return _timestamp_facts(emb, fq_name, subfilter, spec, at, dss)
        return _sig_facts(emb, fq_name, kind, subfilter, spec, at, dss)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. AttributeError from a corrupt CMS
        return SignatureFacts(field=fq_name, kind=kind, subfilter=subfilter,
                              revision=getattr(emb, "signed_revision", None),
                              error=f"validation failed: {_describe(exc)}")


def _integrity_facts(status) -> dict[str, Any]:
    from pyhanko.sign.diff_analysis import DiffResult

    diff = status.diff_result
    level = status.modification_level
    return {
        "coverage": Coverage(status.coverage.name) if status.coverage is not None else None,
        "modification_level": ModificationLevel(level.name) if level is not None else None,
        "diff_error": (_describe(diff) if diff is not None and not isinstance(diff, DiffResult)
                       else None),
        "changed_form_fields": (frozenset(diff.changed_form_fields)
                                if isinstance(diff, DiffResult) else frozenset()),
        "docmdp_ok": status.docmdp_ok,
    }


def _chain_facts(status) -> dict[str, Any]:
    name, expired, not_yet = _trust_flags(status.trust_problem_indic)
    rd = status.revocation_details
    revoked = rd is not None or (name or "").startswith("REVOKED")
    return {
        "trusted": bool(status.trusted),
        "chain_error": name if not status.trusted else None,
        "revoked": revoked,
        "revoked_at": getattr(rd, "revocation_date", None),
        "ca_revoked": bool(getattr(rd, "ca_revoked", False)),
        "expired": expired,
        "not_yet_valid": not_yet,
    }


def _run(coro):
    """Run a pyHanko coroutine; works inside a running event loop too (e.g. an async route),
    where ``asyncio.run`` would raise and turn every file into a parse error."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="elicense-pdf-validate")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _sig_facts(emb, fq_name: str, kind: SignatureKind, subfilter: str | None,
               spec: PdfVerificationSpec, at: datetime, dss: _Dss) -> SignatureFacts:
    from pyhanko.sign.validation import async_validate_pdf_signature

    ts_time = _unsigned_tst_time(emb.signer_info)
    moment = ts_time if (spec.use_signing_time and ts_time is not None) else at
    if moment > at:
        moment = at  # a timestamp from the future proves nothing beyond now
    cms_crls, cms_ocsps = _cms_revinfo(emb.signer_info)
    vc = _validation_context(spec, moment, dss, cms_crls, cms_ocsps)
    status = _run(async_validate_pdf_signature(emb, signer_validation_context=vc,
                                               ts_validation_context=vc))
    tsv = status.timestamp_validity
    subject, issuer_code, role = _signer_identity(status.signing_cert)
    docmdp_level = None
    try:
        lvl = emb.docmdp_level
        docmdp_level = lvl.value if lvl is not None else None
    except Exception:  # noqa: BLE001
        pass
    weak = _weak_algorithms(status.md_algorithm, status.pkcs7_signature_mechanism,
                            status.signing_cert, status.validation_path)
    if tsv is not None:
        weak = tuple(dict.fromkeys(weak + tuple(
            "timestamp-" + w for w in _weak_algorithms(tsv.md_algorithm,
                                                        tsv.pkcs7_signature_mechanism,
                                                        tsv.signing_cert,
                                                        tsv.validation_path))))
    return SignatureFacts(
        field=fq_name, kind=kind, revision=emb.signed_revision, subfilter=subfilter,
        signer_subject=subject, signer_issuer_code=issuer_code, signer_role=role,
        intact=bool(status.intact), valid=bool(status.valid),
        validation_time=moment,
        docmdp_level=docmdp_level,
        seed_value_ok=bool(status.seed_value_ok),
        signing_time=status.signer_reported_dt,
        timestamp=tsv.timestamp if tsv is not None else None,
        timestamp_valid=(bool(tsv.intact and tsv.valid) if tsv is not None else None),
        timestamp_trusted=(bool(tsv.trusted) if tsv is not None else None),
        md_algorithm=status.md_algorithm,
        signature_mechanism=status.pkcs7_signature_mechanism,
        weak_algorithms=weak,
        ocsp_count=len(dss.ocsps) + len(cms_ocsps),
        crl_count=len(dss.crls) + len(cms_crls),
        **_integrity_facts(status),
        **_chain_facts(status),
    )


def _timestamp_facts(emb, fq_name: str, subfilter: str | None, spec: PdfVerificationSpec,
                     at: datetime, dss: _Dss) -> SignatureFacts:
    from pyhanko.sign.validation import async_validate_pdf_timestamp

    gen_time = _tst_gen_time(emb.signed_data)
    moment = gen_time if (spec.use_signing_time and gen_time is not None) else at
    if moment > at:
        moment = at
    vc = _validation_context(spec, moment, dss, [], [])
    status = _run(async_validate_pdf_timestamp(emb, validation_context=vc))
    subject, issuer_code, role = _signer_identity(status.signing_cert)
    facts = _integrity_facts(status)
    facts["docmdp_ok"] = None  # a document timestamp carries no DocMDP of its own
    return SignatureFacts(
        field=fq_name, kind=SignatureKind.DOC_TIMESTAMP, revision=emb.signed_revision,
        subfilter=subfilter, signer_subject=subject, signer_issuer_code=issuer_code,
        signer_role=role, intact=bool(status.intact), valid=bool(status.valid),
        validation_time=moment, timestamp=status.timestamp,
        timestamp_valid=bool(status.intact and status.valid),
        timestamp_trusted=bool(status.trusted),
        md_algorithm=status.md_algorithm, signature_mechanism=status.pkcs7_signature_mechanism,
        weak_algorithms=_weak_algorithms(status.md_algorithm, status.pkcs7_signature_mechanism,
                                         status.signing_cert, status.validation_path),
        ocsp_count=len(dss.ocsps), crl_count=len(dss.crls),
        **facts, **_chain_facts(status),
    )


_MAX_FIELD_OBJECTS = 2000


def _confirm_changed_fields(reader, sigs: list[SignatureFacts]) -> list[SignatureFacts]:
    """Keep a field in ``changed_form_fields`` only when it really changed after the signature.

    pyHanko 0.38's diff analysis names an untouched text field as changed in every later
    revision (its unchanged appearance stream is reported as a form update), so a countersigned
    form would look like a filled-in one. A field is kept when one of its own objects (field
    dictionary, kids, widget appearance streams, value) is written again — or newly added —
    after the signed revision; a field that cannot be resolved is kept (conservative).
    Runs after every signature has been validated (it reads objects of the latest revision).
    """
    from dataclasses import replace

    if not any(s.changed_form_fields for s in sigs):
        return sigs
    try:
        fields = _field_objects(reader)
        total = reader.xrefs.total_revisions
        updated_after: dict[int, set[tuple[int, int]]] = {}
        out = []
        for s in sigs:
            if not s.changed_form_fields or s.revision is None:
                out.append(s)
                continue
            if s.revision not in updated_after:
                refs: set[tuple[int, int]] = set()
                for rev in range(s.revision + 1, total):
                    refs.update((r.idnum, r.generation)
                                for r in reader.xrefs.explicit_refs_in_revision(rev))
                updated_after[s.revision] = refs
            refs = updated_after[s.revision]
            kept = frozenset(name for name in s.changed_form_fields
                             if name not in fields or fields[name] & refs)
            out.append(replace(s, changed_form_fields=kept))
        return out
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - keep pyHanko's (stricter) answer
        return sigs


def _field_objects(reader) -> dict[str, set[tuple[int, int]]]:
    """Fully qualified field name -> the references of the objects that make up the field."""
    from pyhanko.pdf_utils import generic

    out: dict[str, set[tuple[int, int]]] = {}
    budget = [_MAX_FIELD_OBJECTS]

    def reachable(obj, refs: set[tuple[int, int]], depth: int) -> None:
        if budget[0] <= 0 or depth > 8:
            raise ValueError("form too large to analyse")
        budget[0] -= 1
        if isinstance(obj, generic.IndirectObject):
            key = (obj.idnum, obj.generation)
            if key in refs:
                return
            refs.add(key)
            obj = obj.get_object()
        if isinstance(obj, generic.DictionaryObject):  # stream dictionaries included
            for k in obj.keys():
                if k in ("/P", "/Parent"):
                    continue
                reachable(obj.raw_get(k), refs, depth + 1)
        elif isinstance(obj, generic.ArrayObject):
            for item in list.__iter__(obj):  # raw entries (references not resolved)
                reachable(item, refs, depth + 1)

    def walk(ref, prefix: str, depth: int) -> None:
        if depth > 16:
            raise ValueError("form too deep")
        field = ref.get_object() if isinstance(ref, generic.IndirectObject) else ref
        name = field.get("/T")
        fq = (f"{prefix}.{name}" if prefix else str(name)) if name is not None else prefix
        if name is not None:
            refs: set[tuple[int, int]] = set()
            reachable(ref, refs, 0)
            out.setdefault(fq, set()).update(refs)
        kids = field.get("/Kids")
        for kid in list.__iter__(kids) if isinstance(kids, generic.ArrayObject) else ():
            if "/T" in kid.get_object():
                walk(kid, fq, depth + 1)

    form = reader.root.get("/AcroForm")
    if form is None:
        return out
    fields = form.get_object().get("/Fields")
    for ref in list.__iter__(fields) if isinstance(fields, generic.ArrayObject) else ():
        walk(ref, "", 0)
    return out


def _assign_pades_levels(sigs: list[SignatureFacts], dss: _Dss) -> list[SignatureFacts]:
    from dataclasses import replace

    ts_revisions = [s.revision for s in sigs
                    if s.kind is SignatureKind.DOC_TIMESTAMP and s.revision is not None
                    and s.error is None]
    out = []
    for s in sigs:
        if s.kind is SignatureKind.DOC_TIMESTAMP or s.error is not None:
            out.append(s)
            continue
        level = PadesLevel.B_B
        if s.timestamp is not None:
            level = PadesLevel.B_T
            if s.ocsp_count or s.crl_count:
                level = PadesLevel.B_LT
                if s.revision is not None and any(r > s.revision for r in ts_revisions):
                    level = PadesLevel.B_LTA
        out.append(replace(s, pades_level=level))
    return out


# --- bounded runner -----------------------------------------------------------------------------


_PRELOAD = ("signing.pdf_facts", "pyhanko.pdf_utils.reader", "pyhanko.sign.validation",
            "pyhanko.sign.fields", "pyhanko.sign.diff_analysis", "pyhanko_certvalidator",
            "asn1crypto.x509", "asn1crypto.crl", "asn1crypto.ocsp")


def _warm_up() -> None:
    """Import everything before the address-space limit applies (imports allocate)."""
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    """Worker loop: one request (pdf, spec, memory_mb) at a time, facts back."""
    import resource

    _warm_up()

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    current_limit = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        pdf, spec, memory_mb = msg
        limit = memory_mb * MiB
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if limit != current_limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
            current_limit = limit
        try:
            facts = gather_document_facts(pdf, spec)
        except MemoryError:
            facts = DocumentFacts.failed("memory", size=len(pdf))
        recycle = facts.parse_error == "memory"
        try:
            conn.send((facts, recycle))
        except Exception:  # noqa: BLE001 - e.g. MemoryError while pickling
            try:
                conn.send((DocumentFacts.failed("memory", size=len(pdf)), True))
            except Exception:  # noqa: BLE001
                return
        if recycle:
            return


class _Worker:
    def __init__(self, ctx) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True,
                                name="elicense-pdf-facts")
        self.proc.start()
        child.close()

    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(5)
        finally:
            self.conn.close()

    def close(self) -> None:
        try:
            self.conn.send(None)
            self.proc.join(2)
        except Exception:  # noqa: BLE001
            pass
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


class BoundedFactGatherer:
    """A small pool of persistent worker processes that gather facts under time and memory
    bounds. Thread-safe: each call takes an idle worker (starting one if below ``workers``).

    Raises nothing for bad input; a worker that times out is killed (and replaced lazily).
    """

    def __init__(self, *, workers: int = 1, start_method: str = "forkserver") -> None:
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            try:
                self._ctx.set_forkserver_preload(list(_PRELOAD))
            except Exception:  # noqa: BLE001
                pass
        self._max = max(1, workers)
        self._idle: list[_Worker] = []
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("BoundedFactGatherer is closed")
                while self._idle:
                    w = self._idle.pop()
                    if w.alive():
                        return w
                    w.kill()
                    self._count -= 1
                if self._count < self._max:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            return _Worker(self._ctx)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, w: _Worker | None) -> None:
        with self._cond:
            if w is None or self._closed:
                self._count -= 1
                if w is not None:
                    w.close()
            else:
                self._idle.append(w)
            self._cond.notify()

    def gather(self, pdf: bytes, spec: PdfVerificationSpec, *, timeout_s: float = 30.0,
               memory_mb: int = 1536) -> DocumentFacts:
        size = len(pdf)
        w = self._acquire()
        try:
            w.conn.send((bytes(pdf), spec, int(memory_mb)))
            if not w.conn.poll(timeout_s):
                w.kill()
                self._release(None)
                return DocumentFacts.failed("timeout", size=size)
            facts, recycle = w.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = w.proc.exitcode
            w.kill()
            self._release(None)
            # SIGKILL: the kernel's OOM killer (over the memory bound); anything else: a crash
            return DocumentFacts.failed("memory" if code == -9 else f"worker crashed ({code})",
                                        size=size)
        except BaseException:
            w.kill()
            self._release(None)
            raise
        if recycle:
            w.kill()
            self._release(None)
        else:
            self._release(w)
        return facts

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for w in idle:
            w.close()


_default: BoundedFactGatherer | None = None
_default_lock = threading.Lock()


def _default_gatherer() -> BoundedFactGatherer:
    global _default
    with _default_lock:
        if _default is None:
            _default = BoundedFactGatherer(workers=1)
            atexit.register(_default.close)
        return _default


def verify_bounded(pdf_bytes: bytes, spec: PdfVerificationSpec, *, timeout_s: float = 30.0,
                   memory_mb: int = 1536) -> DocumentFacts:
    """Gather facts in a worker process with a wall-clock and address-space bound.

    Over the bound: ``DocumentFacts.parse_error`` is ``"timeout"`` or ``"memory"`` (the policy
    turns that into TOTAL_FAILED / FORMAT_FAILURE). Never raises for bad input.
    """
    return _default_gatherer().gather(pdf_bytes, spec, timeout_s=timeout_s,
                                      memory_mb=memory_mb)
