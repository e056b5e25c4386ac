"""The SPEC §6 acceptance rule on hand-built facts: each rule can fail on its own."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from license_core.oids import CertificateRole
from license_core.policy import (
    AllOf,
    Intact,
    PdfAcceptancePolicy,
    PolicyContext,
    PolicyViolation,
    TrustedChain,
    judge_document,
)
from license_core.verification import (
    Coverage,
    DocumentFacts,
    Indication,
    ModificationLevel,
    PadesLevel,
    SignatureFacts,
    SignatureKind,
    SubIndication,
    worst,
)

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)
TS = datetime(2025, 6, 1, tzinfo=timezone.utc)
ISSUER = "11110000000021135M"
P, I, F = Indication.TOTAL_PASSED, Indication.INDETERMINATE, Indication.TOTAL_FAILED


def seal(**over) -> SignatureFacts:
    base = SignatureFacts(
        field="Seal", kind=SignatureKind.SEAL, revision=0, subfilter="/ETSI.CAdES.detached",
        signer_subject="CN=Seal", signer_issuer_code=ISSUER,
        signer_role=CertificateRole.DEPARTMENT_SEAL, intact=True, valid=True, trusted=True,
        validation_time=TS, coverage=Coverage.ENTIRE_REVISION,
        modification_level=ModificationLevel.LTA_UPDATES, docmdp_ok=True, docmdp_level=1,
        timestamp=TS, timestamp_valid=True, timestamp_trusted=True, ocsp_count=1,
        pades_level=PadesLevel.B_LTA)
    return replace(base, **over)


def doc_ts(**over) -> SignatureFacts:
    base = SignatureFacts(
        field="DocTS", kind=SignatureKind.DOC_TIMESTAMP, revision=1, intact=True, valid=True,
        trusted=True, coverage=Coverage.ENTIRE_REVISION,
        modification_level=ModificationLevel.LTA_UPDATES, timestamp=TS)
    return replace(base, **over)


def approval(field="Sig1", revision=0, **over) -> SignatureFacts:
    return seal(field=field, kind=SignatureKind.SIGNATURE, revision=revision, docmdp_level=None,
                signer_role=CertificateRole.HOLDER, signer_issuer_code=None, **over)


def elicense_doc(*sigs: SignatureFacts, **over) -> DocumentFacts:
    base = DocumentFacts(size=1000, signatures=sigs or (seal(), doc_ts()), revisions=3,
                         is_certified=True, docmdp_permission=1, has_dss=True,
                         has_elicense_metadata=True, embedded_files=("license.json",),
                         license_json=b"{}")
    return replace(base, **over)


def official_doc(*sigs: SignatureFacts, **over) -> DocumentFacts:
    return replace(DocumentFacts(size=1000, signatures=sigs, revisions=len(sigs) + 1), **over)


def judge(doc, **kw):
    kw.setdefault("expected_issuer", ISSUER)
    return judge_document(doc, verified_at=AT, **kw)


def verdict(doc, **kw):
    r = judge(doc, **kw)
    return r.indication, r.sub_indication


# --- the happy paths ---------------------------------------------------------------------------


def test_blta_elicense_passes():
    report = judge(elicense_doc())
    assert report.passed and report.judged_as_elicense
    assert all(c.passed for c in report.checks)
    assert all(v.passed for v in report.signatures)
    json.dumps(report.to_dict())
    d = report.to_dict()
    assert set(d) >= {"indication", "sub_indication", "signatures", "license", "checks",
                      "verified_at"}
    assert set(d["signatures"][0]) >= {
        "field", "signer", "intact", "valid", "trusted", "coverage", "modification_level",
        "docmdp_ok", "signing_time", "timestamp", "revocation", "pades_level", "indication",
        "sub_indication", "kind"}
    assert d["signatures"][0]["signer"]["issuer_code"] == ISSUER


def test_entire_file_official_document_passes():
    s = approval(coverage=Coverage.ENTIRE_FILE, modification_level=ModificationLevel.NONE)
    assert verdict(official_doc(s)) == (P, None)


# --- document rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("doc,expected", [
    (DocumentFacts.failed("PdfReadError: broken xref"), (F, SubIndication.FORMAT_FAILURE)),
    (DocumentFacts.failed("timeout"), (F, SubIndication.FORMAT_FAILURE)),
    (DocumentFacts.failed("memory"), (F, SubIndication.FORMAT_FAILURE)),
    (elicense_doc(trailing_bytes_after_eof=12), (F, SubIndication.TRAILING_DATA)),
    (elicense_doc(tail_problem="loose object"), (F, SubIndication.TRAILING_DATA)),
    (elicense_doc(dss_error="bad CRL"), (F, SubIndication.FORMAT_FAILURE)),
    (official_doc(), (F, SubIndication.NO_SIGNATURE_FOUND)),
    (official_doc(doc_ts(revision=0)), (F, SubIndication.NO_SIGNATURE_FOUND)),
], ids=["parse", "timeout", "memory", "trailing", "tail", "dss", "unsigned", "only-doc-ts"])
def test_document_rules(doc, expected):
    assert verdict(doc) == expected


def test_strict_parse_optional():
    doc = elicense_doc(strict_parse_error="PdfStrictReadError: x")
    assert verdict(doc)[0] is P
    report = PdfAcceptancePolicy(expected_issuer=ISSUER, require_strict_parse=True).judge(
        doc, verified_at=AT)
    assert report.sub_indication is SubIndication.FORMAT_FAILURE


# --- signature rules (each can fail alone) -----------------------------------------------------


@pytest.mark.parametrize("over,expected", [
    ({"error": "CMSExtractionError"}, (F, SubIndication.FORMAT_FAILURE)),
    ({"intact": False}, (F, SubIndication.HASH_FAILURE)),
    ({"valid": False}, (F, SubIndication.SIG_CRYPTO_FAILURE)),
    ({"timestamp_valid": False}, (F, SubIndication.SIG_CRYPTO_FAILURE)),
    ({"timestamp_trusted": False}, (I, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)),
    ({"weak_algorithms": ("digest:sha1",)}, (I, SubIndication.CRYPTO_CONSTRAINTS_FAILURE)),
    ({"coverage": Coverage.CONTIGUOUS_BLOCK_FROM_START}, (F, SubIndication.COVERAGE_FAILURE)),
    ({"coverage": Coverage.UNCLEAR}, (F, SubIndication.COVERAGE_FAILURE)),
    ({"coverage": None}, (F, SubIndication.COVERAGE_FAILURE)),
    ({"modification_level": ModificationLevel.FORM_FILLING},
     (F, SubIndication.MODIFIED_AFTER_SEAL)),
    ({"modification_level": ModificationLevel.ANNOTATIONS},
     (F, SubIndication.MODIFIED_AFTER_SEAL)),
    ({"modification_level": ModificationLevel.OTHER}, (F, SubIndication.MODIFIED_AFTER_SEAL)),
    ({"modification_level": None}, (F, SubIndication.MODIFIED_AFTER_SEAL)),
    ({"diff_error": "SuspiciousModification"}, (F, SubIndication.MODIFIED_AFTER_SEAL)),
    ({"docmdp_ok": False}, (F, SubIndication.MODIFIED_AFTER_SEAL)),
    ({"docmdp_ok": None}, (F, SubIndication.MODIFIED_AFTER_SEAL)),
    ({"trusted": False, "chain_error": "NO_CERTIFICATE_CHAIN_FOUND"},
     (I, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)),
    ({"trusted": False, "chain_error": None}, (I, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)),
    ({"trusted": False, "revoked": True, "revoked_at": TS}, (F, SubIndication.REVOKED)),
    ({"trusted": False, "expired": True, "chain_error": "EXPIRED"}, (I, SubIndication.EXPIRED)),
    ({"trusted": False, "not_yet_valid": True, "chain_error": "NOT_YET_VALID"},
     (F, SubIndication.NOT_YET_VALID)),
    ({"trusted": False, "chain_error": "TRY_LATER"}, (I, SubIndication.TRY_LATER)),
    ({"trusted": False, "chain_error": "CHAIN_CONSTRAINTS_FAILURE"},
     (I, SubIndication.CHAIN_CONSTRAINTS_FAILURE)),
    ({"seed_value_ok": False}, (I, SubIndication.SIG_CONSTRAINTS_FAILURE)),
    # e-license specifics
    ({"signer_role": CertificateRole.HOLDER}, (F, SubIndication.WRONG_SIGNER)),
    ({"signer_role": CertificateRole.TSA}, (F, SubIndication.WRONG_SIGNER)),
    ({"signer_role": None}, (F, SubIndication.WRONG_SIGNER)),
    ({"signer_issuer_code": "91110000000021135X"}, (F, SubIndication.ISSUER_MISMATCH)),
    ({"signer_issuer_code": None}, (F, SubIndication.ISSUER_MISMATCH)),
    ({"kind": SignatureKind.SIGNATURE}, (F, SubIndication.SIG_CONSTRAINTS_FAILURE)),
    ({"docmdp_level": 2}, (F, SubIndication.SIG_CONSTRAINTS_FAILURE)),
])
def test_each_seal_rule_can_fail(over, expected):
    assert verdict(elicense_doc(seal(**over), doc_ts())) == expected


def test_revoked_after_timestamp_is_not_revoked():
    # the gatherer validates at the timestamp: a later revocation leaves the seal trusted
    s = seal(revoked=False, trusted=True, revoked_at=None)
    assert verdict(elicense_doc(s, doc_ts()))[0] is P


def test_elicense_needs_expected_issuer():
    assert verdict(elicense_doc(), expected_issuer=None) == (F, SubIndication.ISSUER_MISMATCH)


def test_qr_forces_elicense_rules():
    s = approval(coverage=Coverage.ENTIRE_FILE, modification_level=ModificationLevel.NONE)
    doc = official_doc(s)
    assert verdict(doc)[0] is P
    assert verdict(doc, treat_as_elicense=True)[0] is F
    # metadata cannot be argued away
    assert verdict(elicense_doc(), treat_as_elicense=False)[0] is P
    assert judge(elicense_doc(), treat_as_elicense=False).judged_as_elicense


@pytest.mark.parametrize("over,expected", [
    ({"intact": False}, (F, SubIndication.HASH_FAILURE)),
    ({"trusted": False, "chain_error": "NO_CERTIFICATE_CHAIN_FOUND"},
     (I, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)),
    ({"modification_level": ModificationLevel.FORM_FILLING},
     (F, SubIndication.MODIFIED_AFTER_SEAL)),
    ({"coverage": Coverage.UNCLEAR}, (F, SubIndication.COVERAGE_FAILURE)),
    ({"docmdp_ok": False}, (F, SubIndication.MODIFIED_AFTER_SEAL)),
])
def test_doc_timestamp_rules(over, expected):
    assert verdict(elicense_doc(seal(), doc_ts(**over))) == expected


def test_doc_timestamp_needs_no_department_role():
    assert verdict(elicense_doc(seal(), doc_ts(signer_role=CertificateRole.TSA)))[0] is P


# --- countersignatures on e-official documents ---------------------------------------------------


def _countersigned(second: SignatureFacts, changed=frozenset({"Sig2"}), **first_over):
    first = approval("Sig1", 0, modification_level=ModificationLevel.FORM_FILLING,
                     changed_form_fields=changed, **first_over)
    return official_doc(first, second)


SIG2 = approval("Sig2", 1, coverage=Coverage.ENTIRE_FILE,
                modification_level=ModificationLevel.NONE)


def test_countersignature_passes():
    report = judge(_countersigned(SIG2))
    assert report.passed, report.to_dict()


def test_countersignature_field_must_be_a_later_signature():
    assert verdict(_countersigned(SIG2, changed=frozenset({"Sig2", "Amount"}))) == (
        F, SubIndication.MODIFIED_AFTER_SIGNING)
    assert verdict(_countersigned(SIG2, changed=frozenset())) == (
        F, SubIndication.MODIFIED_AFTER_SIGNING)
    earlier = replace(SIG2, revision=0)
    first = approval("Sig1", 1, modification_level=ModificationLevel.FORM_FILLING,
                     changed_form_fields=frozenset({"Sig2"}))
    assert verdict(official_doc(earlier, first))[0] is F


def test_countersignature_must_itself_pass():
    bad = replace(SIG2, intact=False)
    report = judge(_countersigned(bad))
    assert report.indication is F
    first = next(v for v in report.signatures if v.field == "Sig1")
    assert not first.passed
    untrusted = replace(SIG2, trusted=False, chain_error="NO_CERTIFICATE_CHAIN_FOUND")
    assert verdict(_countersigned(untrusted)) == (I, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)


def test_countersignature_needs_docmdp_ok():
    assert verdict(_countersigned(SIG2, docmdp_ok=False)) == (
        F, SubIndication.MODIFIED_AFTER_SIGNING)


def test_form_filling_shadow_attack_fails():
    first = approval("Sig1", 0, modification_level=ModificationLevel.FORM_FILLING,
                     changed_form_fields=frozenset({"Amount"}))
    assert verdict(official_doc(first)) == (F, SubIndication.MODIFIED_AFTER_SIGNING)


def test_countersignature_not_allowed_after_elicense_seal():
    s = seal(modification_level=ModificationLevel.FORM_FILLING,
             changed_form_fields=frozenset({"Sig2"}))
    second = replace(SIG2, signer_role=CertificateRole.DEPARTMENT_SEAL,
                     signer_issuer_code=ISSUER)
    assert verdict(elicense_doc(s, second)) == (F, SubIndication.MODIFIED_AFTER_SEAL)


def test_annotations_after_approval_fail():
    first = approval("Sig1", 0, modification_level=ModificationLevel.ANNOTATIONS)
    assert verdict(official_doc(first)) == (F, SubIndication.MODIFIED_AFTER_SIGNING)


# --- composition and ordering --------------------------------------------------------------------


def test_worst_orders_indications():
    assert worst([]) == (P, None)
    assert worst([(P, None), (I, SubIndication.EXPIRED), (F, SubIndication.HASH_FAILURE),
                  (I, SubIndication.TRY_LATER)]) == (F, SubIndication.HASH_FAILURE)
    assert P.severity < I.severity < F.severity


def test_all_of_raises_first_and_evaluates_all():
    ctx = PolicyContext(document=elicense_doc(), elicense=True, expected_issuer=ISSUER)
    rules = AllOf((Intact(), TrustedChain()))
    bad = seal(intact=False, trusted=False)
    with pytest.raises(PolicyViolation) as exc:
        rules.verify(bad, ctx)
    assert exc.value.sub_indication is SubIndication.HASH_FAILURE
    ind, sub, checks = rules.evaluate(bad, ctx)
    assert (ind, sub) == (F, SubIndication.HASH_FAILURE)
    assert [c.passed for c in checks] == [False, False]


def test_overall_is_worst_of_all_signatures():
    report = judge(elicense_doc(seal(trusted=False, chain_error="NO_CERTIFICATE_CHAIN_FOUND"),
                                doc_ts(intact=False)))
    assert (report.indication, report.sub_indication) == (F, SubIndication.HASH_FAILURE)


def test_with_license_folds_failure():
    from license_core.verification import LicenseSection

    report = judge(elicense_doc())
    out = report.with_license(LicenseSection(id="x", registry_status="revoked"),
                              failure=(F, SubIndication.LICENSE_REVOKED))
    assert (out.indication, out.sub_indication) == (F, SubIndication.LICENSE_REVOKED)
    assert out.to_dict()["license"]["registry_status"] == "revoked"


@pytest.mark.parametrize("level", [PadesLevel.B_B, PadesLevel.B_T, None])
def test_elicense_seal_must_be_long_term(level):
    """SPEC §6: e-licenses are sealed B-LT at least; a B-T seal from a valid key fails."""
    assert verdict(elicense_doc(seal(pades_level=level))) == (
        Indication.TOTAL_FAILED, SubIndication.SIG_CONSTRAINTS_FAILURE)
    assert verdict(elicense_doc(seal(pades_level=PadesLevel.B_LT)))[0] is Indication.TOTAL_PASSED
