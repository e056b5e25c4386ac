"""The shared signed-PDF corpus (see its README): every file gets a report, tampered and
malformed files never pass when their own anchors are trusted, honest files are reported intact.

Facts are gathered through the bounded worker (the production path), then judged by the
default acceptance policy.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from license_core.policy import judge_document
from license_core.verification import (
    Coverage,
    DocumentFacts,
    Indication,
    ModificationLevel,
    PdfReport,
    SignatureFacts,
    SubIndication,
)
from signing.pdf_facts import PdfVerificationSpec, load_pem_anchors
from tests.corpus.conftest import manifest_entries, missing_corpus_reason

TIMEOUT_S = float(os.environ.get("ELICENSE_CORPUS_TIMEOUT", "120"))
ENTRIES = manifest_entries()
_PARAMS = ([pytest.param(e, id=e["file"]) for e in ENTRIES]
           or [pytest.param(None, id="no-corpus",
                            marks=pytest.mark.skipif(os.environ.get("CI") != "true",
                                                     reason=missing_corpus_reason()))])


def _anchors(root: Path, entry: dict) -> tuple[bytes, ...]:
    if not entry["anchors"]:
        return ()
    return load_pem_anchors((root / entry["anchors"]).read_bytes())


def _verify(gatherer, root: Path, entry: dict) -> tuple[DocumentFacts, PdfReport]:
    pdf = (root / entry["file"]).read_bytes()
    spec = PdfVerificationSpec(trust_roots=_anchors(root, entry))
    facts = gatherer.gather(pdf, spec, timeout_s=TIMEOUT_S)
    report = judge_document(facts, verified_at=datetime.now(timezone.utc))
    return facts, report


def _integrity_ok(sig: SignatureFacts) -> bool:
    if sig.error is not None or not (sig.intact and sig.valid):
        return False
    if sig.coverage is Coverage.ENTIRE_FILE:
        return True
    return (sig.coverage is Coverage.ENTIRE_REVISION
            and sig.modification_level in (ModificationLevel.NONE,
                                           ModificationLevel.LTA_UPDATES))


def _describe(facts: DocumentFacts, report: PdfReport) -> str:
    return json.dumps({"indication": report.indication.value,
                       "sub": report.sub_indication and report.sub_indication.value,
                       "facts": facts.to_dict()}, default=str)[:3000]


@pytest.mark.parametrize("entry", _PARAMS)
def test_corpus_file(entry, corpus_root, fact_gatherer):
    if entry is None:
        pytest.fail(missing_corpus_reason())
    facts, report = _verify(fact_gatherer, corpus_root, entry)
    # 1. every file: a report, JSON-serialisable, never an exception
    json.dumps(report.to_dict())
    assert isinstance(report.indication, Indication)
    expect = entry["expect"]
    # 2. must_not_pass: the file's own anchors are trusted, the verdict is still not a pass
    if expect["must_not_pass"]:
        assert report.indication is not Indication.TOTAL_PASSED, _describe(facts, report)
    # 3. honest: every signature and document timestamp intact, valid, properly covering
    if expect["intact_when_trusted"] is True:
        assert facts.parse_error is None, _describe(facts, report)
        assert facts.signatures, _describe(facts, report)
        bad = [s.field for s in facts.signatures if not _integrity_ok(s)]
        assert not bad, f"not intact: {bad}: " + _describe(facts, report)
    # 4. tampered: at least one signature fails integrity/coverage/modification, or rejected
    if expect["intact_when_trusted"] is False:
        rejected = (facts.parse_error is not None or facts.trailing_bytes_after_eof > 0
                    or facts.tail_problem is not None or not facts.signatures)
        assert rejected or any(not _integrity_ok(s) for s in facts.signatures), \
            _describe(facts, report)


# --- derived tampering the corpus does not contain: bytes after the last revision -------------

_HONEST_BLTA = "dss/pdf-with-eof-cr.pdf"


def _honest(corpus_root: Path) -> tuple[bytes, PdfVerificationSpec]:
    entry = next((e for e in ENTRIES if e["file"] == _HONEST_BLTA), None)
    if entry is None:
        pytest.skip(f"{_HONEST_BLTA} not in the corpus")
    pdf = (corpus_root / entry["file"]).read_bytes()
    return pdf, PdfVerificationSpec(trust_roots=_anchors(corpus_root, entry))


def test_honest_baseline_passes(corpus_root, fact_gatherer):
    pdf, spec = _honest(corpus_root)
    facts = fact_gatherer.gather(pdf, spec, timeout_s=TIMEOUT_S)
    report = judge_document(facts, verified_at=datetime.now(timezone.utc))
    assert report.indication is Indication.TOTAL_PASSED, _describe(facts, report)


@pytest.mark.parametrize("suffix", [
    b"\n<script>junk</script>\n",
    b"\n99 0 obj\n<</Type/Annot/Subtype/FreeText/Contents(forged)>>\nendobj\n%%EOF\n",
    b"\n99 0 obj\n(loose)\nendobj\nstartxref\n0\n%%EOF\n",
], ids=["junk", "loose-object-eof", "loose-object-startxref"])
def test_appended_bytes_fail(suffix, corpus_root, fact_gatherer):
    pdf, spec = _honest(corpus_root)
    facts = fact_gatherer.gather(pdf + suffix, spec, timeout_s=TIMEOUT_S)
    report = judge_document(facts, verified_at=datetime.now(timezone.utc))
    assert report.indication is Indication.TOTAL_FAILED, _describe(facts, report)


def test_trailing_whitespace_is_fine(corpus_root, fact_gatherer):
    pdf, spec = _honest(corpus_root)
    facts = fact_gatherer.gather(pdf + b"\r\n\n  \x00", spec, timeout_s=TIMEOUT_S)
    assert facts.trailing_bytes_after_eof == 0 and facts.tail_problem is None


def test_untrusted_root_is_indeterminate(corpus_root, fact_gatherer):
    pdf, _ = _honest(corpus_root)
    facts = fact_gatherer.gather(pdf, PdfVerificationSpec(trust_roots=()), timeout_s=TIMEOUT_S)
    report = judge_document(facts, verified_at=datetime.now(timezone.utc))
    assert report.indication is Indication.INDETERMINATE
    assert report.sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND


def test_bounds_timeout_and_memory(corpus_root):
    from signing.pdf_facts import BoundedFactGatherer

    pdf, spec = _honest(corpus_root)
    gatherer = BoundedFactGatherer(workers=1)
    try:
        assert gatherer.gather(pdf, spec, timeout_s=0.0001).parse_error == "timeout"
        # far below what the worker already maps: any *new* mapping fails. A small PDF may fit
        # in arenas the worker already holds, so send one whose tail (32 MiB after %%EOF) must
        # be copied to be checked: that allocation cannot be served from existing memory.
        bloated = pdf + b"A" * (32 * 1024 * 1024)
        assert gatherer.gather(bloated, spec, memory_mb=16, timeout_s=60).parse_error == "memory"
        # the pool recovers after both
        assert gatherer.gather(pdf, spec, timeout_s=TIMEOUT_S).parse_error is None
    finally:
        gatherer.close()
    report = judge_document(DocumentFacts.failed("timeout"), verified_at=datetime.now(timezone.utc))
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED,
                                                          SubIndication.FORMAT_FAILURE)
