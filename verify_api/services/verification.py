"""PDF verification (SPEC §6): bounded fact gathering, the acceptance policy, the license step.

Steps of :meth:`PdfVerifier.verify_pdf` (the policy is applied at exactly one step):

1. gather facts in a worker process under the time and memory bounds of the settings
   (``signing.pdf_facts``); over a bound the facts say so and the policy makes it
   TOTAL_FAILED / FORMAT_FAILURE. Besides the revocation data embedded in the file, the
   platform's *current* CRLs are handed in: embedded data shows the status at sealing time
   only, so a seal made with a stolen key after its revocation would otherwise pass (a seal
   timestamped before the revocation still passes: SPEC §6);
2. read the e-license claim from the facts: a PDF with an embedded ``license.json`` or e-license
   XMP is an e-license; the identifier inside the JSON names the issuer its seal must carry;
3. judge the facts with ``license_core.policy.judge_document``;
4. for an e-license, the **license step**: the registry must know that exact version, say
   ``valid`` for it (effective status at the verification time), and the record rebuilt from the
   registry (``license_core.records.license_record``, the function issuance embeds) must equal
   the embedded JSON byte for byte.

The registry is authoritative only for documents its own platform vouches for: when the seal
does not chain to a trusted root, registry findings are folded in as INDETERMINATE at worst (the
untrusted chain is then the first thing the report names).

Nothing here raises for hostile input; exceptions are for broken configuration or an unreachable
database.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from directory import catalog as catalog_q
from directory import licenses as q
from directory.models import Holder
from directory.usage import record_license_usage
from license_core.canonical import canonical_json
from license_core.clock import CHINA_TZ
from license_core.errors import InvalidIdentifier, LicenseError, UnknownLicense
from license_core.holder_codes import mask_holder_code
from license_core.identifiers import LicenseIdentifier
from license_core.lifecycle import LicenseStatus, effective_status
from license_core.policy import judge_document
from license_core.qr_token import decode_token, token_from_payload
from license_core.records import license_record
from license_core.verification import (
    CheckResult,
    DocumentFacts,
    Indication,
    LicenseSection,
    PdfReport,
    SignatureKind,
    SubIndication,
    worst,
)
from signing.pdf_facts import BoundedFactGatherer, PdfVerificationSpec, load_pem_anchors

from ..container import Container
from ..platform.pki import platform_pki

__all__ = ["PdfVerifier", "pdf_verifier", "public_report", "mask_holder_codes",
           "load_trust_anchors"]

_F, _I = Indication.TOTAL_FAILED, Indication.INDETERMINATE
_STATUS_FAILURES = {
    LicenseStatus.REVOKED: SubIndication.LICENSE_REVOKED,
    LicenseStatus.SUSPENDED: SubIndication.LICENSE_SUSPENDED,
    LicenseStatus.SUPERSEDED: SubIndication.LICENSE_SUPERSEDED,
    LicenseStatus.EXPIRED: SubIndication.LICENSE_EXPIRED,
}
# serialNumber of a 一证通用 certificate: 111-<resident ID> or 001-<USCC>
_HOLDER_SERIAL = re.compile(r"(?<![0-9A-Za-z])(111|001)-([0-9A-Z]{18})(?![0-9A-Za-z])")


def mask_holder_codes(value: Any) -> Any:
    """A copy of a JSON-like value with every ``111-``/``001-`` holder code masked."""
    if isinstance(value, str):
        return _HOLDER_SERIAL.sub(lambda m: f"{m.group(1)}-{mask_holder_code(m.group(2))}", value)
    if isinstance(value, dict):
        return {k: mask_holder_codes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_holder_codes(v) for v in value]
    return value


def public_report(report: PdfReport) -> dict[str, Any]:
    """The report for public answers (SPEC §6 keys; holder codes masked, subjects included)."""
    return mask_holder_codes(report.to_dict())


def load_trust_anchors(data: bytes) -> tuple[bytes, ...]:
    """DER certificates from a PEM bundle (or one DER certificate)."""
    anchors = load_pem_anchors(data)
    if anchors or b"-----BEGIN" in data:
        return anchors
    from cryptography import x509
    try:
        return (x509.load_der_x509_certificate(data).public_bytes(Encoding.DER),)
    except ValueError:
        return ()


@dataclass(frozen=True)
class _Claim:
    """What the embedded license.json says about itself (before any registry look-up)."""

    raw: bytes | None
    identifier: LicenseIdentifier | None = None
    problem: str | None = None
    problem_sub: SubIndication | None = None


def _read_claim(facts: DocumentFacts) -> _Claim:
    raw = facts.license_json
    if raw is None:
        return _Claim(None, problem="the e-license carries no embedded license.json",
                      problem_sub=SubIndication.LICENSE_DATA_MISMATCH)
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _Claim(raw, problem="the embedded license.json is not UTF-8 JSON",
                      problem_sub=SubIndication.FORMAT_FAILURE)
    ident_text = record.get("id") if isinstance(record, dict) else None
    try:
        ident = LicenseIdentifier.parse(ident_text)  # type: ignore[arg-type]
    except InvalidIdentifier as exc:
        return _Claim(raw, problem=f"the embedded license identifier is invalid: {exc.detail}",
                      problem_sub=SubIndication.LICENSE_DATA_MISMATCH)
    return _Claim(raw, identifier=ident)


def _elicense_qr_identifier(facts: DocumentFacts) -> LicenseIdentifier | None:
    """The license named by an e-license QR printed on page 1, if any (its signature is not
    checked here: any QR in our token format makes the document an e-license, SPEC §6)."""
    for payload in facts.page_qr_payloads:
        try:
            claims = decode_token(token_from_payload(payload)).claims
            return LicenseIdentifier.parse(claims.license_id)
        except LicenseError:
            continue
    return None


class PdfVerifier:
    """Verifies PDFs for one container; built once per process (:func:`pdf_verifier`).

    Holds the bounded fact gatherer (persistent forkserver workers, started lazily) and the
    configured trust anchors (the platform root). Thread-safe.
    """

    def __init__(self, container: Container, *, workers: int | None = None) -> None:
        self._container = container
        settings = container.settings
        self._timeout_s = float(settings.verify_timeout_s)
        self._memory_mb = int(settings.verify_memory_mb)
        pki = platform_pki(container)
        self._pki = pki
        self.trust_roots: tuple[bytes, ...] = (pki.root.public_bytes(Encoding.DER),)
        n = workers if workers is not None else min(4, os.cpu_count() or 1)
        self._gatherer = BoundedFactGatherer(workers=n, start_method="forkserver")
        self._crl_lock = threading.Lock()
        self._crl: tuple[tuple[Any, ...], datetime, bytes] | None = None

    def close(self) -> None:
        self._gatherer.close()

    def current_crls(self, at: datetime) -> tuple[bytes, ...]:
        """The platform's CRLs as of now (issuing CA, root), for revocations after sealing.

        The revocation list is read from the database on every call (so every worker follows a
        revocation at once); a CRL is signed again only when that list changed or the cached
        one is an hour old (signing one takes a CRL number from a shared counter).
        """
        pki = self._pki
        revoked = tuple(sorted((e.serial, e.revoked_at, e.reason)
                               for e in pki.store.revoked_serials(pki.ca.issuer)))
        with self._crl_lock:
            cached = self._crl
            if (cached is None or cached[0] != revoked or at < cached[1]
                    or at - cached[1] > timedelta(hours=1)
                    # a revocation dated after the cached CRL (clock skew) is not in it yet
                    or any(entry[1] > cached[1] for entry in revoked)):
                cached = (revoked, at, pki.ca.crl(at).public_bytes(Encoding.DER))
                self._crl = cached
        return (cached[2], pki.root_crl_der())

    # -- steps ----------------------------------------------------------------------------------

    def gather(self, pdf: bytes, *, at: datetime,
               extra_anchors: Iterable[bytes] = ()) -> DocumentFacts:
        """Step 1: facts under the time and memory bound (never raises for bad input)."""
        if not isinstance(pdf, (bytes, bytearray)) or b"%PDF-" not in bytes(pdf[:1024]):
            return DocumentFacts.failed("not a PDF (no %PDF- header)",
                                        size=len(pdf) if pdf is not None else 0)
        spec = PdfVerificationSpec(trust_roots=self.trust_roots, at=at,
                                   extra_anchors=tuple(extra_anchors),
                                   current_crls=self.current_crls(at))
        return self._gatherer.gather(bytes(pdf), spec, timeout_s=self._timeout_s,
                                     memory_mb=self._memory_mb)

    def verify_pdf(self, pdf: bytes, *, extra_anchors: Iterable[bytes] = (),
                   at: datetime | None = None, actor: str = "public",
                   record_usage: bool = True) -> PdfReport:
        """The SPEC §6 report for ``pdf``. ``extra_anchors``: DER certificates trusted in
        addition to the platform root (``--trust``). A report that reaches a registered
        license writes a usage record for its holder (SPEC §8). Raises only for
        infrastructure errors."""
        at = at or self._container.clock.now()
        facts = self.gather(pdf, at=at, extra_anchors=extra_anchors)
        qr_identifier = _elicense_qr_identifier(facts)
        elicense = facts.parse_error is None and (facts.has_elicense_metadata
                                                 or facts.license_json is not None
                                                 or qr_identifier is not None)
        claim = _read_claim(facts) if elicense else None
        expected = claim.identifier.issuer_code if claim and claim.identifier else None
        if expected is None and qr_identifier is not None:
            expected = qr_identifier.issuer_code
        report = judge_document(facts, verified_at=at, expected_issuer=expected,
                                treat_as_elicense=elicense)
        if claim is None or not report.judged_as_elicense:
            return report
        report = self._license_step(report, claim, at=at)
        section = report.license
        if record_usage and section is not None and section.registry_status is not None:
            with self._container.session() as session, session.begin():
                record_license_usage(session, at=at, license_id=section.id, actor=actor,
                                     purpose="verify_pdf", outcome=report.indication.value,
                                     detail={"sub_indication": report.sub_indication.value
                                             if report.sub_indication else None})
        return report

    def _license_step(self, report: PdfReport, claim: _Claim, *, at: datetime) -> PdfReport:
        """Step 4: registry look-up of the exact version, its status, and the data match."""
        checks: list[CheckResult] = []
        failures: list[tuple[Indication, SubIndication | None]] = []

        def fail(name: str, sub: SubIndication, detail: str,
                 indication: Indication = _F) -> None:
            checks.append(CheckResult(name, False, detail))
            failures.append((indication, sub))

        ident = claim.identifier
        if ident is None:
            fail("license_identifier", claim.problem_sub or SubIndication.LICENSE_DATA_MISMATCH,
                 claim.problem or "no license identifier")
            return self._fold(report, LicenseSection(None), checks, failures)
        checks.append(CheckResult("license_identifier", True, str(ident)))
        section = LicenseSection(str(ident), type_code=ident.type_code,
                                 version=ident.version_text)
        container = self._container
        with container.session() as session:
            try:
                row = q.get_license(session, license_id=str(ident))
            except UnknownLicense:
                fail("license_registered", SubIndication.LICENSE_UNKNOWN,
                     f"the registry has no license version {ident}")
                return self._fold(report, section, checks, failures)
            checks.append(CheckResult("license_registered", True, ""))
            status = effective_status(row.status, row.valid_to, at)
            section = LicenseSection(str(ident), type_code=ident.type_code,
                                     version=ident.version_text, registry_status=status.value)
            if status is LicenseStatus.VALID:
                checks.append(CheckResult("license_status", True, "valid"))
            else:
                detail = f"the registry says {status.value}"
                if status is LicenseStatus.SUPERSEDED and row.successor_id:
                    detail += f" (current version: {row.successor_id})"
                elif status is LicenseStatus.EXPIRED and row.valid_to:
                    detail += f" (valid to {row.valid_to.isoformat()})"
                elif row.status_reason:
                    detail += f" ({row.status_reason})"
                fail("license_status", _STATUS_FAILURES[status], detail)
            expected = canonical_json(self._registry_record(session, row))
        matches = claim.raw == expected
        section = LicenseSection(section.id, type_code=section.type_code, version=section.version,
                                 registry_status=section.registry_status,
                                 data_matches_registry=matches)
        if matches:
            checks.append(CheckResult("license_data_matches_registry", True, ""))
        else:
            fail("license_data_matches_registry", SubIndication.LICENSE_DATA_MISMATCH,
                 "the embedded license.json differs from the registry record")
        return self._fold(report, section, checks, failures)

    def _registry_record(self, session: Any, row: Any) -> dict[str, Any]:
        cipher = self._container.cipher
        holder = session.get(Holder, row.holder_id)
        ltype = catalog_q.get_license_type(session, code=row.type_code)
        issuer = catalog_q.get_issuer(session, code=row.issuer_code)
        return license_record(
            license_id=row.id, version=row.version, type_code=row.type_code,
            type_name=ltype.name, issuer_code=row.issuer_code, issuer_name=issuer.name,
            holder_code=q.holder_code(holder, cipher=cipher), holder_name=row.holder_name,
            holder_code_type=holder.code_type,
            co_holders=q.decrypt_co_holders(row.co_holders_enc, cipher=cipher),
            license_number=row.license_number, data=row.data, valid_from=row.valid_from,
            valid_to=row.valid_to, issued_on=row.issued_at.astimezone(CHINA_TZ).date())

    @staticmethod
    def _fold(report: PdfReport, section: LicenseSection, checks: list[CheckResult],
              failures: list[tuple[Indication, SubIndication | None]]) -> PdfReport:
        failure = worst(failures) if failures else None
        if failure is not None and failure[0] is not Indication.TOTAL_PASSED:
            seals = [v for v in report.signatures if v.facts.kind is SignatureKind.SEAL]
            if not any(v.facts.trusted for v in seals):
                # the registry speaks only for documents its own platform vouches for
                failure = (_I, failure[1]) if failure[0] is _F else failure
        else:
            failure = None
        return report.with_license(section, failure=failure, checks=tuple(checks))


def pdf_verifier(container: Container) -> PdfVerifier:
    """The process-wide verifier of a container (built on first use, closed on dispose)."""
    def build() -> PdfVerifier:
        verifier = PdfVerifier(container)
        container.on_dispose(verifier.close)
        return verifier

    return container.singleton("pdf_verifier", build)
