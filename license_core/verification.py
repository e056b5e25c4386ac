"""Result types of PDF verification: facts gathered by ``signing``, verdicts judged by ``policy``.

Facts are frozen dataclasses that say what *is* (intact, coverage, modification level, chain
problem); verdicts (:class:`Indication`, :class:`SubIndication`) say what the acceptance rule of
SPEC §6 makes of them. ``to_dict()`` gives the report keys of SPEC §6 (JSON-ready: enums become
their values, datetimes ISO 8601 strings).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from license_core.oids import CertificateRole

__all__ = [
    "ELICENSE_EMBEDDED_FILENAME",
    "ELICENSE_XMP_NAMESPACE",
    "Indication",
    "SubIndication",
    "SignatureKind",
    "Coverage",
    "ModificationLevel",
    "PadesLevel",
    "SignatureFacts",
    "DocumentFacts",
    "CheckResult",
    "SignatureVerdict",
    "LicenseSection",
    "PdfReport",
    "worst",
]

#: Name of the embedded file that carries the canonical license JSON in an e-license PDF.
ELICENSE_EMBEDDED_FILENAME = "license.json"
#: XMP namespace URI of the e-license metadata (converters write it; the verifier detects it).
ELICENSE_XMP_NAMESPACE = "urn:elicense:xmp:1.0/"


class Indication(str, enum.Enum):
    """ETSI EN 319 102-1 main indication. ``severity`` orders them: the worst is the largest."""

    TOTAL_PASSED = "TOTAL_PASSED"
    INDETERMINATE = "INDETERMINATE"
    TOTAL_FAILED = "TOTAL_FAILED"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def passed(self) -> bool:
        return self is Indication.TOTAL_PASSED


_SEVERITY = {Indication.TOTAL_PASSED: 0, Indication.INDETERMINATE: 1, Indication.TOTAL_FAILED: 2}


class SubIndication(str, enum.Enum):
    # ETSI EN 319 102-1 values used by SPEC §6
    FORMAT_FAILURE = "FORMAT_FAILURE"
    HASH_FAILURE = "HASH_FAILURE"
    SIG_CRYPTO_FAILURE = "SIG_CRYPTO_FAILURE"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    NO_CERTIFICATE_CHAIN_FOUND = "NO_CERTIFICATE_CHAIN_FOUND"
    NOT_YET_VALID = "NOT_YET_VALID"
    SIG_CONSTRAINTS_FAILURE = "SIG_CONSTRAINTS_FAILURE"
    CHAIN_CONSTRAINTS_FAILURE = "CHAIN_CONSTRAINTS_FAILURE"
    CRYPTO_CONSTRAINTS_FAILURE = "CRYPTO_CONSTRAINTS_FAILURE"
    TRY_LATER = "TRY_LATER"
    NO_SIGNATURE_FOUND = "NO_SIGNATURE_FOUND"
    # license lifecycle / registry (filled by the license step, not by the PDF policy)
    LICENSE_REVOKED = "LICENSE_REVOKED"
    LICENSE_SUSPENDED = "LICENSE_SUSPENDED"
    LICENSE_SUPERSEDED = "LICENSE_SUPERSEDED"
    LICENSE_EXPIRED = "LICENSE_EXPIRED"
    LICENSE_DATA_MISMATCH = "LICENSE_DATA_MISMATCH"
    LICENSE_UNKNOWN = "LICENSE_UNKNOWN"
    # elicense-specific tamper findings (more precise than ETSI's vocabulary)
    COVERAGE_FAILURE = "COVERAGE_FAILURE"
    MODIFIED_AFTER_SIGNING = "MODIFIED_AFTER_SIGNING"
    MODIFIED_AFTER_SEAL = "MODIFIED_AFTER_SEAL"
    TRAILING_DATA = "TRAILING_DATA"
    WRONG_SIGNER = "WRONG_SIGNER"
    ISSUER_MISMATCH = "ISSUER_MISMATCH"


class SignatureKind(str, enum.Enum):
    SEAL = "seal"  # certification signature (DocMDP)
    SIGNATURE = "signature"  # approval signature
    DOC_TIMESTAMP = "doc_timestamp"


class Coverage(str, enum.Enum):
    UNCLEAR = "UNCLEAR"
    CONTIGUOUS_BLOCK_FROM_START = "CONTIGUOUS_BLOCK_FROM_START"
    ENTIRE_REVISION = "ENTIRE_REVISION"
    ENTIRE_FILE = "ENTIRE_FILE"


class ModificationLevel(str, enum.Enum):
    NONE = "NONE"
    LTA_UPDATES = "LTA_UPDATES"
    FORM_FILLING = "FORM_FILLING"
    ANNOTATIONS = "ANNOTATIONS"
    OTHER = "OTHER"


class PadesLevel(str, enum.Enum):
    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class SignatureFacts:
    """What the fact gatherer found about one signature field (signature or document timestamp).

    ``error`` is set when the signature could not be evaluated at all (unsupported sub-filter,
    undecodable CMS, validation raised); the boolean facts are then ``False``.
    """

    field: str
    kind: SignatureKind
    revision: int | None = None  # index of the signed revision (0-based)
    subfilter: str | None = None
    error: str | None = None
    signer_subject: str | None = None
    signer_issuer_code: str | None = None  # USCC from organizationIdentifier NTRCN-<USCC>
    signer_role: CertificateRole | None = None
    intact: bool = False
    valid: bool = False
    trusted: bool = False
    chain_error: str | None = None  # pyHanko/ETSI sub-indication name of the trust problem
    revoked: bool = False
    revoked_at: datetime | None = None
    ca_revoked: bool = False
    expired: bool = False
    not_yet_valid: bool = False
    validation_time: datetime | None = None  # the moment the chain was validated at
    coverage: Coverage | None = None
    modification_level: ModificationLevel | None = None
    diff_error: str | None = None  # suspicious modification reported by the diff analysis
    docmdp_ok: bool | None = None
    docmdp_level: int | None = None  # certification permission P (1, 2, 3) of this signature
    changed_form_fields: frozenset[str] = frozenset()
    seed_value_ok: bool = True
    signing_time: datetime | None = None  # claimed by the signer (signed attr or /M)
    timestamp: datetime | None = None  # signature timestamp (or doc timestamp gen time)
    timestamp_valid: bool | None = None  # None: no timestamp token
    timestamp_trusted: bool | None = None
    md_algorithm: str | None = None
    signature_mechanism: str | None = None
    weak_algorithms: tuple[str, ...] = ()
    ocsp_count: int = 0
    crl_count: int = 0
    pades_level: PadesLevel | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "kind": self.kind.value,
            "revision": self.revision,
            "subfilter": self.subfilter,
            "error": self.error,
            "signer": {
                "subject": self.signer_subject,
                "issuer_code": self.signer_issuer_code,
                "role": self.signer_role.value if self.signer_role else None,
            },
            "intact": self.intact,
            "valid": self.valid,
            "trusted": self.trusted,
            "chain_error": self.chain_error,
            "coverage": self.coverage.value if self.coverage else None,
            "modification_level": (self.modification_level.value
                                   if self.modification_level else None),
            "docmdp_ok": self.docmdp_ok,
            "changed_form_fields": sorted(self.changed_form_fields),
            "signing_time": _iso(self.signing_time),
            "timestamp": _iso(self.timestamp),
            "timestamp_valid": self.timestamp_valid,
            "revocation": {
                "revoked": self.revoked,
                "revoked_at": _iso(self.revoked_at),
                "ocsp_count": self.ocsp_count,
                "crl_count": self.crl_count,
            },
            "weak_algorithms": list(self.weak_algorithms),
            "pades_level": self.pades_level.value if self.pades_level else None,
        }


@dataclass(frozen=True)
class DocumentFacts:
    """What the fact gatherer found about a whole PDF.

    ``parse_error`` is set when the file could not be read (or the worker hit its time or
    memory bound: ``"timeout"`` / ``"memory"``); other facts are then mostly empty.
    """

    size: int = 0
    signatures: tuple[SignatureFacts, ...] = ()
    parse_error: str | None = None
    strict_parse_error: str | None = None  # the file only parsed leniently
    hybrid_xref: bool = False  # hybrid-reference file (validated in lenient mode)
    trailing_bytes_after_eof: int = 0  # non-whitespace bytes after the last %%EOF
    tail_problem: str | None = None  # the file does not end with its last revision's trailer
    encrypted: bool = False
    revisions: int = 0
    is_certified: bool = False
    docmdp_permission: int | None = None
    has_dss: bool = False
    dss_error: str | None = None
    dss_ocsp_count: int = 0
    dss_crl_count: int = 0
    has_elicense_metadata: bool = False
    embedded_files: tuple[str, ...] = ()
    license_json: bytes | None = None
    xmp_elicense: bool = False
    # QR codes found on page 1 (looked for only on signed PDFs without e-license metadata: a
    # copied e-license QR makes a document an e-license whatever else it claims, SPEC §6)
    page_qr_payloads: tuple[str, ...] = ()

    @classmethod
    def failed(cls, reason: str, *, size: int = 0) -> DocumentFacts:
        return cls(size=size, parse_error=reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "parse_error": self.parse_error,
            "strict_parse_error": self.strict_parse_error,
            "hybrid_xref": self.hybrid_xref,
            "trailing_bytes_after_eof": self.trailing_bytes_after_eof,
            "tail_problem": self.tail_problem,
            "encrypted": self.encrypted,
            "revisions": self.revisions,
            "is_certified": self.is_certified,
            "docmdp_permission": self.docmdp_permission,
            "has_dss": self.has_dss,
            "dss_error": self.dss_error,
            "has_elicense_metadata": self.has_elicense_metadata,
            "embedded_files": list(self.embedded_files),
            "signatures": [s.to_dict() for s in self.signatures],
        }


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def worst(pairs: list[tuple[Indication, SubIndication | None]]
          ) -> tuple[Indication, SubIndication | None]:
    """The worst (indication, sub-indication) pair; the first one wins among equals."""
    best: tuple[Indication, SubIndication | None] = (Indication.TOTAL_PASSED, None)
    for ind, sub in pairs:
        if ind.severity > best[0].severity:
            best = (ind, sub)
    return best


@dataclass(frozen=True)
class SignatureVerdict:
    facts: SignatureFacts
    indication: Indication
    sub_indication: SubIndication | None = None
    checks: tuple[CheckResult, ...] = ()

    @property
    def field(self) -> str:
        return self.facts.field

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED

    def to_dict(self) -> dict[str, Any]:
        out = self.facts.to_dict()
        out["indication"] = self.indication.value
        out["sub_indication"] = self.sub_indication.value if self.sub_indication else None
        out["checks"] = [c.to_dict() for c in self.checks]
        return out


@dataclass(frozen=True)
class LicenseSection:
    """The license part of the report (filled by the license step, not by the PDF policy)."""

    id: str | None
    type_code: str | None = None
    version: str | None = None
    registry_status: str | None = None
    data_matches_registry: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type_code": self.type_code, "version": self.version,
                "registry_status": self.registry_status,
                "data_matches_registry": self.data_matches_registry}


@dataclass(frozen=True)
class PdfReport:
    indication: Indication
    sub_indication: SubIndication | None
    signatures: tuple[SignatureVerdict, ...]
    checks: tuple[CheckResult, ...]
    verified_at: datetime
    judged_as_elicense: bool = False
    license: LicenseSection | None = None
    document: DocumentFacts | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED

    def with_license(self, section: LicenseSection, *,
                     failure: tuple[Indication, SubIndication | None] | None = None,
                     checks: tuple[CheckResult, ...] = ()) -> PdfReport:
        """A copy with the license part set; ``failure`` (if any) is folded into the overall."""
        ind, sub = self.indication, self.sub_indication
        if failure is not None:
            ind, sub = worst([(ind, sub), failure])
        return replace(self, license=section, indication=ind, sub_indication=sub,
                       checks=self.checks + tuple(checks))

    def to_dict(self) -> dict[str, Any]:
        return {
            "indication": self.indication.value,
            "sub_indication": self.sub_indication.value if self.sub_indication else None,
            "signatures": [v.to_dict() for v in self.signatures],
            "license": self.license.to_dict() if self.license else None,
            "checks": [c.to_dict() for c in self.checks],
            "verified_at": self.verified_at.isoformat(),
            "judged_as_elicense": self.judged_as_elicense,
        }
