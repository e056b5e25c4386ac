"""The acceptance rule of SPEC §6 as small, composable policy objects.

Mechanism vs policy (STYLE.md): ``signing`` gathers :class:`DocumentFacts`; this module judges
them. Each rule is an object with ``verify(...) -> None`` that raises :class:`PolicyViolation`
(indication, sub-indication, detail); :class:`AllOf` composes rules. :func:`judge_document` runs
every rule (so the report lists every check), and the overall indication is the worst of the
document checks and of every signature and document timestamp (all of them are needed: a broken
one is never ignored).

Deliberate strictness (documented choices):

- An unsigned document (no approval/certification signature; document timestamps alone do not
  count) is TOTAL_FAILED / NO_SIGNATURE_FOUND: nothing vouches for it.
- A signature timestamp that is present but broken fails the signature (TOTAL_FAILED); one that
  does not chain to a trusted root makes it INDETERMINATE (the signing time is then unproven).
- SHA-1/MD5 digests and RSA keys under 2048 bits are INDETERMINATE / CRYPTO_CONSTRAINTS_FAILURE
  unless ``allow_weak_algorithms``.
- A file that only parses leniently is judged on its other facts; ``require_strict_parse``
  turns the strict parser's complaint into TOTAL_FAILED / FORMAT_FAILURE.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from license_core.oids import CertificateRole
from license_core.verification import (
    CheckResult,
    Coverage,
    DocumentFacts,
    Indication,
    ModificationLevel,
    PadesLevel,
    PdfReport,
    SignatureFacts,
    SignatureKind,
    SignatureVerdict,
    SubIndication,
    worst,
)

__all__ = [
    "PolicyViolation",
    "LongTermValidation",
    "PolicyContext",
    "SignatureRule",
    "DocumentRule",
    "AllOf",
    "WellFormed",
    "Intact",
    "CryptographicallyValid",
    "TimestampSound",
    "StrongAlgorithms",
    "CoversDocument",
    "OnlyAllowedChanges",
    "TrustedChain",
    "SeedValuesRespected",
    "DepartmentSealSigner",
    "IssuerMatches",
    "CertifiedNoChanges",
    "DocumentParsed",
    "NoTrailingData",
    "HasSignature",
    "ValidationDataReadable",
    "PdfAcceptancePolicy",
    "judge_document",
    "is_elicense",
]

_F = Indication.TOTAL_FAILED
_I = Indication.INDETERMINATE
_LTA_OK = (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES)


class PolicyViolation(Exception):
    """Raised by a rule's ``verify``; carries the verdict it implies."""

    def __init__(self, indication: Indication, sub_indication: SubIndication | None,
                 detail: str) -> None:
        super().__init__(detail)
        self.indication = indication
        self.sub_indication = sub_indication
        self.detail = detail


@dataclass(frozen=True)
class PolicyContext:
    """What a signature rule may need besides the signature's own facts."""

    document: DocumentFacts
    elicense: bool
    expected_issuer: str | None = None
    allow_weak_algorithms: bool = False
    # verdicts of signatures in later revisions (filled while judging, latest first)
    later_verdicts: tuple[SignatureVerdict, ...] = ()


class SignatureRule(Protocol):
    name: str

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        """Raise :class:`PolicyViolation` when ``sig`` breaks the rule."""


class DocumentRule(Protocol):
    name: str

    def verify(self, doc: DocumentFacts, ctx: PolicyContext) -> None:
        """Raise :class:`PolicyViolation` when ``doc`` breaks the rule."""


@dataclass(frozen=True)
class AllOf:
    """Every rule must hold; ``verify`` raises the first violation (``evaluate`` keeps all)."""

    rules: tuple[SignatureRule, ...]
    name: str = "all_of"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        for rule in self.rules:
            rule.verify(sig, ctx)

    def evaluate(self, sig: SignatureFacts, ctx: PolicyContext
                 ) -> tuple[Indication, SubIndication | None, tuple[CheckResult, ...]]:
        return _evaluate(self.rules, sig, ctx)


def _evaluate(rules: Iterable, subject, ctx: PolicyContext
              ) -> tuple[Indication, SubIndication | None, tuple[CheckResult, ...]]:
    checks: list[CheckResult] = []
    outcomes: list[tuple[Indication, SubIndication | None]] = []
    for rule in rules:
        try:
            rule.verify(subject, ctx)
        except PolicyViolation as v:
            checks.append(CheckResult(rule.name, False, v.detail))
            outcomes.append((v.indication, v.sub_indication))
        else:
            checks.append(CheckResult(rule.name, True, ""))
    ind, sub = worst(outcomes)
    return ind, sub, tuple(checks)


def _timestamp_kind(sig: SignatureFacts) -> bool:
    return sig.kind is SignatureKind.DOC_TIMESTAMP


# --- signature rules --------------------------------------------------------------------------


@dataclass(frozen=True)
class WellFormed:
    name: str = "signature_well_formed"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if sig.error is not None:
            raise PolicyViolation(_F, SubIndication.FORMAT_FAILURE,
                                  f"signature could not be evaluated: {sig.error}")


@dataclass(frozen=True)
class Intact:
    name: str = "signature_intact"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if not sig.intact:
            raise PolicyViolation(_F, SubIndication.HASH_FAILURE,
                                  "the signed bytes do not match the signed digest")


@dataclass(frozen=True)
class CryptographicallyValid:
    name: str = "signature_valid"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if not sig.valid:
            raise PolicyViolation(_F, SubIndication.SIG_CRYPTO_FAILURE,
                                  "the CMS signature value does not verify")


@dataclass(frozen=True)
class TimestampSound:
    """A signature timestamp, when present, must be intact, valid and trusted."""

    name: str = "signature_timestamp"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if _timestamp_kind(sig) or sig.timestamp_valid is None:
            return
        if not sig.timestamp_valid:
            raise PolicyViolation(_F, SubIndication.SIG_CRYPTO_FAILURE,
                                  "the signature timestamp token is broken")
        if not sig.timestamp_trusted:
            raise PolicyViolation(_I, SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
                                  "the signature timestamp does not chain to a trusted TSA root")


@dataclass(frozen=True)
class StrongAlgorithms:
    name: str = "algorithms"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if sig.weak_algorithms and not ctx.allow_weak_algorithms:
            raise PolicyViolation(_I, SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
                                  "weak algorithms: " + ", ".join(sig.weak_algorithms))


@dataclass(frozen=True)
class CoversDocument:
    """ENTIRE_FILE, or ENTIRE_REVISION (what follows is judged by :class:`OnlyAllowedChanges`)."""

    name: str = "coverage"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if sig.coverage not in (Coverage.ENTIRE_FILE, Coverage.ENTIRE_REVISION):
            cov = sig.coverage.value if sig.coverage else "unknown"
            raise PolicyViolation(_F, SubIndication.COVERAGE_FAILURE,
                                  f"the signature covers {cov}, not its whole revision")


@dataclass(frozen=True)
class OnlyAllowedChanges:
    """After the signed revision: only LTV updates (DSS, document timestamps) and ``docmdp_ok``.

    For documents that are not e-licenses, FORM_FILLING is also allowed when the changed form
    fields are exactly signature fields of later revisions (countersignatures), which must
    themselves pass; the signature then inherits the worst of their verdicts.
    """

    name: str = "modifications"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if sig.coverage is Coverage.ENTIRE_FILE and sig.modification_level in (
                None, ModificationLevel.NONE):
            return
        if sig.coverage is not Coverage.ENTIRE_REVISION:
            raise PolicyViolation(_F, SubIndication.COVERAGE_FAILURE,
                                  "no revision boundary to judge later changes from")
        sub = (SubIndication.MODIFIED_AFTER_SEAL if ctx.elicense
               else SubIndication.MODIFIED_AFTER_SIGNING)
        level = sig.modification_level
        if sig.diff_error is not None:
            raise PolicyViolation(_F, sub, f"suspicious change after signing: {sig.diff_error}")
        if level is None:
            raise PolicyViolation(_F, sub, "changes after signing could not be analysed")
        # document timestamps carry no DocMDP of their own; signatures must say docmdp_ok
        docmdp_ok = sig.docmdp_ok if not _timestamp_kind(sig) else sig.docmdp_ok is not False
        if level in _LTA_OK:
            if not docmdp_ok:
                raise PolicyViolation(_F, sub, "later updates violate the DocMDP permissions")
            return
        # a countersignature (a later signature field with its own LTV updates) shows up as
        # FORM_FILLING for the earlier signatures *and* for their document timestamps
        if level is ModificationLevel.FORM_FILLING and not ctx.elicense:
            if not docmdp_ok:
                raise PolicyViolation(_F, sub, "later updates violate the DocMDP permissions")
            self._countersignatures_only(sig, ctx, sub)
            return
        what = "an e-license's seal" if ctx.elicense else "signing"
        raise PolicyViolation(_F, sub, f"{level.value} changes after {what}")

    @staticmethod
    def _countersignatures_only(sig: SignatureFacts, ctx: PolicyContext,
                                sub: SubIndication) -> None:
        later = {v.field: v for v in ctx.later_verdicts
                 if v.facts.revision is not None and sig.revision is not None
                 and v.facts.revision > sig.revision}
        changed = set(sig.changed_form_fields)
        if not changed:
            raise PolicyViolation(_F, sub, "form changes after signing that name no field")
        strangers = sorted(changed - set(later))
        if strangers:
            raise PolicyViolation(_F, sub, "form fields changed after signing: "
                                  + ", ".join(strangers))
        failing = [later[name] for name in sorted(changed) if not later[name].passed]
        if failing:
            ind, inner = worst([(v.indication, v.sub_indication) for v in failing])
            raise PolicyViolation(ind, inner, "countersignature(s) that do not pass: "
                                  + ", ".join(v.field for v in failing))


@dataclass(frozen=True)
class TrustedChain:
    name: str = "trusted_chain"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if sig.trusted:
            return
        when = (f" at {sig.validation_time.isoformat()}" if sig.validation_time else "")
        if sig.revoked:
            at = f" (revoked {sig.revoked_at.isoformat()})" if sig.revoked_at else ""
            who = "a CA certificate in the chain" if sig.ca_revoked else "the signer certificate"
            raise PolicyViolation(_F, SubIndication.REVOKED, f"{who} was revoked{when}{at}")
        if sig.not_yet_valid:
            raise PolicyViolation(_F, SubIndication.NOT_YET_VALID,
                                  f"the certificate was not yet valid{when}")
        if sig.expired:
            raise PolicyViolation(_I, SubIndication.EXPIRED, f"the certificate was expired{when}")
        err = sig.chain_error or "NO_CERTIFICATE_CHAIN_FOUND"
        if err == "TRY_LATER":
            raise PolicyViolation(_I, SubIndication.TRY_LATER, "revocation status unavailable")
        if err in ("NO_CERTIFICATE_CHAIN_FOUND", "CERTIFICATE_CHAIN_GENERAL_FAILURE"):
            raise PolicyViolation(_I, SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
                                  "no chain to a trusted root")
        if err.startswith("CRYPTO_CONSTRAINTS"):
            raise PolicyViolation(_I, SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
                                  f"certificate chain uses disallowed algorithms ({err})")
        raise PolicyViolation(_I, SubIndication.CHAIN_CONSTRAINTS_FAILURE,
                              f"certificate chain not acceptable ({err})")


@dataclass(frozen=True)
class SeedValuesRespected:
    name: str = "seed_values"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if not sig.seed_value_ok:
            raise PolicyViolation(_I, SubIndication.SIG_CONSTRAINTS_FAILURE,
                                  "the signature field's seed-value constraints are not met")


@dataclass(frozen=True)
class DepartmentSealSigner:
    """E-licenses: the signer certificate carries the department-seal policy OID."""

    name: str = "department_seal_certificate"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if sig.signer_role is not CertificateRole.DEPARTMENT_SEAL:
            role = sig.signer_role.value if sig.signer_role else "none"
            raise PolicyViolation(_F, SubIndication.WRONG_SIGNER,
                                  f"an e-license must be sealed with a department seal "
                                  f"certificate (signer role: {role})")


@dataclass(frozen=True)
class IssuerMatches:
    """E-licenses: organizationIdentifier NTRCN-<USCC> names the identifier's issuer."""

    name: str = "issuer_matches"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if ctx.expected_issuer is None:
            raise PolicyViolation(_F, SubIndication.ISSUER_MISMATCH,
                                  "the expected issuer is unknown (no license identifier)")
        if sig.signer_issuer_code != ctx.expected_issuer:
            raise PolicyViolation(_F, SubIndication.ISSUER_MISMATCH,
                                  f"sealed by {sig.signer_issuer_code or 'no department'}, "
                                  f"the license names {ctx.expected_issuer}")


@dataclass(frozen=True)
class CertifiedNoChanges:
    """E-licenses are certification signatures that permit no changes (DocMDP P=1)."""

    name: str = "certified_no_changes"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if sig.kind is not SignatureKind.SEAL or sig.docmdp_level != 1:
            raise PolicyViolation(_F, SubIndication.SIG_CONSTRAINTS_FAILURE,
                                  "an e-license seal must be a certification signature "
                                  "permitting no changes")


@dataclass(frozen=True)
class LongTermValidation:
    """E-licenses are sealed PAdES B-LT at least: a signature timestamp and the revocation data
    of the seal chain embedded, so they verify offline for as long as the timestamp holds."""

    name: str = "long_term_validation"

    def verify(self, sig: SignatureFacts, ctx: PolicyContext) -> None:
        if sig.pades_level not in (PadesLevel.B_LT, PadesLevel.B_LTA):
            level = sig.pades_level.value if sig.pades_level else "unknown"
            raise PolicyViolation(_F, SubIndication.SIG_CONSTRAINTS_FAILURE,
                                  f"an e-license seal must be PAdES B-LT or B-LTA, this one is "
                                  f"{level}")


# --- document rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentParsed:
    require_strict_parse: bool = False
    name: str = "document_parsed"

    def verify(self, doc: DocumentFacts, ctx: PolicyContext) -> None:
        if doc.parse_error is not None:
            raise PolicyViolation(_F, SubIndication.FORMAT_FAILURE,
                                  f"the PDF could not be read: {doc.parse_error}")
        if self.require_strict_parse and doc.strict_parse_error is not None:
            raise PolicyViolation(_F, SubIndication.FORMAT_FAILURE,
                                  f"the PDF is not well-formed: {doc.strict_parse_error}")


@dataclass(frozen=True)
class NoTrailingData:
    name: str = "no_trailing_data"

    def verify(self, doc: DocumentFacts, ctx: PolicyContext) -> None:
        if doc.trailing_bytes_after_eof:
            raise PolicyViolation(_F, SubIndication.TRAILING_DATA,
                                  f"{doc.trailing_bytes_after_eof} bytes after the last %%EOF")
        if doc.tail_problem:
            raise PolicyViolation(_F, SubIndication.TRAILING_DATA, doc.tail_problem)


@dataclass(frozen=True)
class HasSignature:
    name: str = "signature_present"

    def verify(self, doc: DocumentFacts, ctx: PolicyContext) -> None:
        if not any(not _timestamp_kind(s) for s in doc.signatures):
            raise PolicyViolation(_F, SubIndication.NO_SIGNATURE_FOUND,
                                  "the document carries no signature or seal")


@dataclass(frozen=True)
class ValidationDataReadable:
    name: str = "validation_data"

    def verify(self, doc: DocumentFacts, ctx: PolicyContext) -> None:
        if doc.dss_error is not None:
            raise PolicyViolation(_F, SubIndication.FORMAT_FAILURE,
                                  f"the document security store is unreadable: {doc.dss_error}")


# --- the acceptance policy ----------------------------------------------------------------------


def is_elicense(doc: DocumentFacts) -> bool:
    """A PDF carrying e-license metadata (embedded license.json or XMP) is judged as one."""
    return doc.has_elicense_metadata


_COMMON_SIGNATURE_RULES: tuple[SignatureRule, ...] = (
    WellFormed(), Intact(), CryptographicallyValid(), TimestampSound(), StrongAlgorithms(),
    CoversDocument(), OnlyAllowedChanges(), TrustedChain(), SeedValuesRespected(),
)
_ELICENSE_SEAL_RULES: tuple[SignatureRule, ...] = (
    DepartmentSealSigner(), IssuerMatches(), CertifiedNoChanges(), LongTermValidation(),
)


@dataclass(frozen=True)
class PdfAcceptancePolicy:
    """SPEC §6 acceptance rule. ``judge`` returns a :class:`PdfReport`; it never raises.

    ``expected_issuer``: the issuer USCC from the license identifier (e-licenses only).
    ``treat_as_elicense``: force the e-license rules (e.g. an e-license QR was found on the page)
    even when the facts show no metadata; ``None`` decides from the facts. ``False`` cannot turn
    the e-license rules off for a document that carries e-license metadata.
    """

    expected_issuer: str | None = None
    treat_as_elicense: bool | None = None
    allow_weak_algorithms: bool = False
    require_strict_parse: bool = False
    signature_rules: tuple[SignatureRule, ...] = _COMMON_SIGNATURE_RULES
    elicense_rules: tuple[SignatureRule, ...] = _ELICENSE_SEAL_RULES
    document_rules: tuple[DocumentRule, ...] = field(default=())

    def _document_rules(self) -> tuple[DocumentRule, ...]:
        return self.document_rules or (
            DocumentParsed(require_strict_parse=self.require_strict_parse), NoTrailingData(),
            ValidationDataReadable(), HasSignature(),
        )

    def judge(self, doc: DocumentFacts, *, verified_at: datetime) -> PdfReport:
        elicense = is_elicense(doc) or bool(self.treat_as_elicense)
        ctx = PolicyContext(document=doc, elicense=elicense,
                            expected_issuer=self.expected_issuer,
                            allow_weak_algorithms=self.allow_weak_algorithms)
        doc_ind, doc_sub, doc_checks = _evaluate(self._document_rules(), doc, ctx)
        if doc.parse_error is not None:
            return PdfReport(doc_ind, doc_sub, (), doc_checks, verified_at, elicense,
                             document=doc)

        # judge latest first so that countersignatures are known when earlier ones are judged
        ordered = sorted(doc.signatures, key=lambda s: (s.revision is None, s.revision or 0))
        verdicts: dict[int, SignatureVerdict] = {}
        later: list[SignatureVerdict] = []
        for idx in reversed(range(len(ordered))):
            sig = ordered[idx]
            rules = self.signature_rules
            if elicense and not _timestamp_kind(sig):
                rules = rules + self.elicense_rules
            sctx = PolicyContext(document=doc, elicense=elicense,
                                 expected_issuer=self.expected_issuer,
                                 allow_weak_algorithms=self.allow_weak_algorithms,
                                 later_verdicts=tuple(later))
            ind, sub, checks = _evaluate(rules, sig, sctx)
            verdict = SignatureVerdict(sig, ind, sub, checks)
            verdicts[idx] = verdict
            later.append(verdict)
        sig_verdicts = tuple(verdicts[i] for i in range(len(ordered)))
        ind, sub = worst([(doc_ind, doc_sub)]
                         + [(v.indication, v.sub_indication) for v in sig_verdicts])
        return PdfReport(ind, sub, sig_verdicts, doc_checks, verified_at, elicense, document=doc)


def judge_document(doc: DocumentFacts, *, verified_at: datetime,
                   expected_issuer: str | None = None,
                   treat_as_elicense: bool | None = None,
                   allow_weak_algorithms: bool = False) -> PdfReport:
    """Judge ``doc`` under the default :class:`PdfAcceptancePolicy`. Never raises."""
    return PdfAcceptancePolicy(expected_issuer=expected_issuer,
                               treat_as_elicense=treat_as_elicense,
                               allow_weak_algorithms=allow_weak_algorithms
                               ).judge(doc, verified_at=verified_at)
