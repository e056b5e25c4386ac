"""PAdES sealing (certification, no changes, B-LTA) and document signing (approval, countersign)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import MDPPerm
from pyhanko.sign.validation.status import SignatureStatus
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature, read_certification_data
from pyhanko.sign.validation.status import ModificationLevel, SignatureCoverageLevel

from license_core.clock import FixedClock
from license_core.errors import (
    ConfigurationError,
    DocumentLocked,
    MalformedDocument,
    SealKeyRevoked,
)
from signing.keys import FileKeyProvider, FileKeySpec, SigningKey
from signing.pades import (
    LicenseSigner,
    RevocationMaterial,
    SealSpec,
    async_seal_license,
    is_locked,
    seal_license,
)
from signing.validation_context import as_asn1_certificates

from .sealing_fixtures import AT, MiniPKI, blank_pdf, seal_image, shared_softhsm_token

BOX = (400.0, 60.0, 520.0, 180.0)


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki() -> MiniPKI:
    return MiniPKI()


def _file_key(tmp: Path, pki: MiniPKI, key, cert: x509.Certificate, label: str) -> SigningKey:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / f"{label}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    chain = (cert, pki.issuing_ca.certificate, pki.root.certificate)
    (tmp / f"{label}.pem").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    return FileKeyProvider({label: FileKeySpec(tmp / f"{label}.key", tmp / f"{label}.pem")}
                           ).get(label)


@pytest.fixture(scope="module")
def seal_key(pki: MiniPKI, tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return _file_key(tmp_path_factory.mktemp("keys"), pki, pki.seal.private_key,
                     pki.seal.certificate, "seal")


@pytest.fixture(scope="module")
def revocation(pki: MiniPKI) -> RevocationMaterial:
    # the issuing CA's status comes from the root CRL; leaves get fresh OCSP from the callable
    return RevocationMaterial(crls=(pki.root_crl(),), ocsp_source=pki.ocsp_source)


@pytest.fixture(scope="module")
def signer(pki: MiniPKI, seal_key: SigningKey, revocation: RevocationMaterial) -> LicenseSigner:
    return LicenseSigner(seal_key, timestamper=pki.timestamper(), revocation=revocation)


@pytest.fixture(scope="module")
def spec() -> SealSpec:
    return SealSpec(box=BOX, appearance_image=seal_image(), reason="e-license issued")


@pytest.fixture(scope="module")
def sealed(signer: LicenseSigner, spec: SealSpec) -> bytes:
    return signer.seal_license(blank_pdf(), spec, at=AT)


# -- validation helpers -----------------------------------------------------------------------------

def _vc_from_dss(reader: PdfFileReader, pki: MiniPKI, mode: str = "hard-fail"):
    """Trust the test root only; revocation data only from the document's DSS; no fetching."""
    dss = DocumentSecurityStore.read_dss(reader)
    return dss.as_validation_context({
        "trust_roots": as_asn1_certificates([pki.root.certificate]),
        "allow_fetching": False, "revocation_mode": mode})


def _validate(pdf: bytes, pki: MiniPKI) -> list[tuple[EmbeddedPdfSignature, SignatureStatus]]:
    reader = PdfFileReader(io.BytesIO(pdf))
    out = []
    for sig in reader.embedded_signatures:
        vc = _vc_from_dss(reader, pki)
        if sig.sig_object.get("/Type") == "/DocTimeStamp":
            status = validate_pdf_timestamp(sig, validation_context=vc)
        else:
            status = validate_pdf_signature(sig, signer_validation_context=vc,
                                            ts_validation_context=vc)
        out.append((sig, status))
    return out


def _assert_lta_seal(status, *, docmdp: bool = True) -> None:
    assert status.intact and status.valid and status.trusted
    assert status.coverage in (SignatureCoverageLevel.ENTIRE_REVISION,
                               SignatureCoverageLevel.ENTIRE_FILE)
    assert status.modification_level in (ModificationLevel.LTA_UPDATES, ModificationLevel.NONE)
    if docmdp:
        assert status.docmdp_ok is True


# -- e-license seal -----------------------------------------------------------------------------------

def test_seal_is_a_valid_trusted_b_lta_certification(sealed: bytes, pki: MiniPKI) -> None:
    results = _validate(sealed, pki)
    assert [s.field_name for s, _ in results][0] == "Seal"
    assert len(results) == 2  # the seal, then the document timestamp

    seal_sig, seal = results[0]
    _assert_lta_seal(seal)
    assert seal.coverage is SignatureCoverageLevel.ENTIRE_REVISION
    assert seal.modification_level is ModificationLevel.LTA_UPDATES
    # certification with DocMDP "no changes", PAdES subfilter, explicit signing time
    cert_info = read_certification_data(seal_sig.reader)
    assert cert_info is not None and cert_info.permission is MDPPerm.NO_CHANGES
    assert seal_sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert seal.signer_reported_dt == AT
    # B-T: a trusted signature timestamp
    assert seal.timestamp_validity is not None
    assert seal.timestamp_validity.intact and seal.timestamp_validity.valid
    assert seal.timestamp_validity.trusted
    assert seal.timestamp_validity.timestamp == AT
    assert seal.signing_cert.subject.native["organization_identifier"] == \
        "NTRCN-11110000000000000X"

    # B-LTA: the document timestamp is intact, valid and trusted (a DSS revision follows it)
    ts_sig, ts = results[1]
    assert ts_sig.sig_object["/SubFilter"] == "/ETSI.RFC3161"
    assert ts.intact and ts.valid and ts.trusted
    assert ts.coverage is SignatureCoverageLevel.ENTIRE_REVISION


def test_seal_embeds_revocation_material_for_seal_and_tsa_chains(sealed: bytes,
                                                                 pki: MiniPKI) -> None:
    reader = PdfFileReader(io.BytesIO(sealed))
    dss = DocumentSecurityStore.read_dss(reader)
    ocsp_certs = set()
    for ref in dss.ocsps:
        resp = ocsp.load_der_ocsp_response(ref.get_object().data)
        ocsp_certs.add(resp.serial_number)
    assert pki.seal.certificate.serial_number in ocsp_certs
    assert pki.tsa.certificate.serial_number in ocsp_certs
    assert len(dss.crls) >= 1
    # hard-fail validation with only the DSS data: passes, so the file validates offline
    seal_sig = reader.embedded_signatures[0]
    status = validate_pdf_signature(seal_sig, signer_validation_context=_vc_from_dss(reader, pki))
    assert status.trusted
    assert status.revocation_details is None or not status.revoked


def test_seal_has_the_image_stamp_in_its_widget(sealed: bytes) -> None:
    reader = PdfFileReader(io.BytesIO(sealed))
    sig = reader.embedded_signatures[0]
    widget = sig.sig_field
    rect = [float(v) for v in widget["/Rect"]]
    assert rect == list(BOX)
    ap = widget["/AP"]["/N"]

    def images(xobj, depth=0):
        found = 0
        res = xobj.get("/Resources", {})
        for _name, ref in (res.get("/XObject") or {}).items():
            o = ref.get_object()
            if o.get("/Subtype") == "/Image":
                found += 1
            elif depth < 4:
                found += images(o, depth + 1)
        return found

    assert images(ap) >= 1


def test_seal_without_document_timestamp_is_b_lt(signer: LicenseSigner, pki: MiniPKI) -> None:
    spec = SealSpec(box=BOX, appearance_image=seal_image(), document_timestamp=False)
    pdf = signer.seal_license(blank_pdf(), spec, at=AT)
    results = _validate(pdf, pki)
    assert len(results) == 1
    _, seal = results[0]
    _assert_lta_seal(seal)
    assert seal.timestamp_validity is not None and seal.timestamp_validity.trusted


def test_png_bytes_appearance_and_functional_api(pki: MiniPKI, seal_key: SigningKey,
                                                 revocation: RevocationMaterial) -> None:
    buf = io.BytesIO()
    seal_image().save(buf, format="PNG")
    pdf = seal_license(blank_pdf(), signer=seal_key.signer, chain=seal_key.chain,
                       timestamper=pki.timestamper(), revocation=revocation,
                       appearance_image=buf.getvalue(), box=BOX, at=AT)
    _assert_lta_seal(_validate(pdf, pki)[0][1])


def test_async_api_and_sync_wrapper_inside_a_running_loop(pki: MiniPKI, seal_key: SigningKey,
                                                          revocation: RevocationMaterial,
                                                          signer: LicenseSigner,
                                                          spec: SealSpec) -> None:
    async def main() -> tuple[bytes, bytes]:
        a = await async_seal_license(blank_pdf(), signer=seal_key, timestamper=pki.timestamper(),
                                     revocation=revocation, box=BOX, at=AT)
        # the sync API must not call asyncio.run on this (running) loop
        b = signer.seal_license(blank_pdf(), spec, at=AT)
        return a, b

    a, b = asyncio.run(main())
    for pdf in (a, b):
        _assert_lta_seal(_validate(pdf, pki)[0][1])


def test_sealed_license_is_locked(sealed: bytes, signer: LicenseSigner, spec: SealSpec) -> None:
    assert is_locked(sealed)
    assert not is_locked(blank_pdf())
    with pytest.raises(DocumentLocked) as exc_info:
        signer.sign_document(sealed, spec, at=AT)
    assert exc_info.value.code == "document_locked"
    with pytest.raises(DocumentLocked):
        signer.seal_license(sealed, spec, at=AT)


def test_sealing_an_already_signed_document_is_refused(signer: LicenseSigner,
                                                       spec: SealSpec) -> None:
    signed = signer.sign_document(blank_pdf(), SealSpec(document_timestamp=False), at=AT)
    with pytest.raises(DocumentLocked, match="already signed"):
        signer.seal_license(signed, spec, at=AT)


@pytest.mark.parametrize("data", [b"", b"not a pdf at all", b"%PDF-1.7\n1 0 obj\n<<>>\n%%EOF"])
def test_broken_pdf_is_malformed(signer: LicenseSigner, spec: SealSpec, data: bytes) -> None:
    with pytest.raises(MalformedDocument):
        signer.seal_license(data, spec, at=AT)
    with pytest.raises(MalformedDocument):
        signer.sign_document(data, spec, at=AT)


def test_truncated_pdf_is_malformed(signer: LicenseSigner, spec: SealSpec) -> None:
    pdf = blank_pdf()
    with pytest.raises(MalformedDocument):
        signer.seal_license(pdf[: len(pdf) // 2], spec, at=AT)


def test_revoked_seal_certificate_is_refused(pki: MiniPKI, revocation: RevocationMaterial,
                                             tmp_path: Path, spec: SealSpec) -> None:
    entity = pki.issue_plain_seal("Revoked Seal")
    key = _file_key(tmp_path, pki, entity.private_key, entity.certificate, "revoked")
    pki.revoked.add(entity.certificate.serial_number)
    ls = LicenseSigner(key, timestamper=pki.timestamper(), revocation=revocation)
    with pytest.raises(SealKeyRevoked):
        ls.seal_license(blank_pdf(), spec, at=AT)


def test_missing_revocation_material_is_a_configuration_error(pki: MiniPKI, seal_key: SigningKey,
                                                              spec: SealSpec) -> None:
    # no OCSP for the seal: an offline B-LT seal cannot be made
    ls = LicenseSigner(seal_key, timestamper=pki.timestamper(),
                       revocation=RevocationMaterial(crls=(pki.root_crl(),)))
    with pytest.raises(ConfigurationError):
        ls.seal_license(blank_pdf(), spec, at=AT)


def test_static_ocsp_material_works_like_the_callable(pki: MiniPKI, seal_key: SigningKey,
                                                      spec: SealSpec) -> None:
    rev = RevocationMaterial(
        ocsp_responses=(pki.ocsp_response(pki.seal.certificate),
                        pki.ocsp_response(pki.tsa.certificate)),
        crls=(pki.root_crl(),))
    ls = LicenseSigner(seal_key, timestamper=pki.timestamper(), revocation=rev)
    _assert_lta_seal(_validate(ls.seal_license(blank_pdf(), spec, at=AT), pki)[0][1])


def test_no_trust_root_is_a_configuration_error(pki: MiniPKI) -> None:
    from signing.keys import in_memory_signing_key

    key = in_memory_signing_key("x", pki.seal.private_key,
                         [pki.seal.certificate, pki.issuing_ca.certificate])
    with pytest.raises(ConfigurationError, match="trust root"):
        LicenseSigner(key, timestamper=pki.timestamper())


# -- e-official documents: approval signatures and countersignatures ---------------------------------

def test_countersignature_keeps_the_first_signature_valid(pki: MiniPKI, signer: LicenseSigner,
                                                          revocation: RevocationMaterial,
                                                          tmp_path: Path) -> None:
    other = pki.issue_plain_seal("Second Department")
    other_key = _file_key(tmp_path, pki, other.private_key, other.certificate, "second")
    second = LicenseSigner(other_key, timestamper=pki.timestamper(), revocation=revocation)

    first_pdf = signer.sign_document(
        blank_pdf("official document"),
        SealSpec(box=(60, 60, 180, 180), appearance_image=seal_image(), field_name="DeptA"), at=AT)
    assert not is_locked(first_pdf)
    both = second.sign_document(
        first_pdf, SealSpec(box=(220, 60, 340, 180), appearance_image=seal_image(),
                            field_name="DeptB"), at=AT + timedelta(minutes=5))
    assert both.startswith(first_pdf)  # incremental update only

    results = {s.field_name: (s, st) for s, st in _validate(both, pki)}
    approvals = {k: v for k, v in results.items() if not k.startswith("Timestamp")}
    assert set(approvals) == {"DeptA", "DeptB"}
    assert len(results) == 4  # two approvals, two document timestamps

    _, a = approvals["DeptA"]
    assert a.intact and a.valid and a.trusted
    assert a.docmdp_ok
    # the only change after DeptA is the new signature field (PITFALLS: reported as FORM_FILLING)
    assert a.modification_level is ModificationLevel.FORM_FILLING
    assert a.diff_result.changed_form_fields == {"DeptB"}

    _, b = approvals["DeptB"]
    _assert_lta_seal(b)
    assert b.modification_level is ModificationLevel.LTA_UPDATES
    assert b.signing_cert.subject.native["common_name"] == "Second Department"
    for name, (_, st) in results.items():
        if name.startswith("Timestamp"):
            assert st.intact and st.valid and st.trusted


def test_sign_document_refuses_a_taken_field_name(signer: LicenseSigner) -> None:
    pdf = signer.sign_document(blank_pdf(), SealSpec(field_name="X", document_timestamp=False),
                               at=AT)
    with pytest.raises(DocumentLocked):
        signer.sign_document(pdf, SealSpec(field_name="X"), at=AT)


# -- PKCS#11 --------------------------------------------------------------------------------------------

def test_seal_with_a_key_generated_inside_softhsm(pki: MiniPKI, revocation: RevocationMaterial,
                                                  spec: SealSpec) -> None:
    token = shared_softhsm_token()
    label = f"seal-{uuid.uuid4().hex[:8]}"
    cert = pki.issue_seal(token.generate_key(label))
    token.store_certificate(label, cert)
    provider = token.key_provider(ca_chain=[pki.issuing_ca.certificate, pki.root.certificate])
    ls = LicenseSigner(provider.get(label), timestamper=pki.timestamper(), revocation=revocation)
    pdf = ls.seal_license(blank_pdf(), spec, at=AT)
    (seal_sig, seal), (_, ts) = _validate(pdf, pki)
    _assert_lta_seal(seal)
    assert seal.signing_cert.dump() == cert.public_bytes(serialization.Encoding.DER)
    assert ts.valid and ts.trusted
    provider.close()


# -- DevPKI + the platform TSA / OCSP responder -----------------------------------------------------------

def test_seal_with_dev_pki_tsa_and_ocsp_responder(tmp_path: Path, spec: SealSpec) -> None:
    import secrets

    from keys_dev.pki import DepartmentSpec, DevPKI
    from license_core.oids import POLICY_OIDS, CertificateRole
    from signing.ocsp import CertStatusInfo, OcspResponder
    from signing.tsa import InProcessTimeStamper, TimeStampAuthority

    uscc = "11330100MB0000000X"
    dev = DevPKI.build(tmp_path / "pki", now=AT, base_url="http://127.0.0.1:8000",
                       departments=[DepartmentSpec(uscc, "测试局")])
    clock = FixedClock(AT)
    good = lambda issuer, serial: CertStatusInfo.good()  # noqa: E731
    leaf_responder = OcspResponder(dev.ocsp.certificate, dev.ocsp.private_key,
                                   issuers=[dev.issuing_ca.certificate], status_lookup=good,
                                   clock=clock)
    root_responder = OcspResponder(dev.root.certificate, dev.root.private_key,
                                   issuers=[dev.root.certificate], status_lookup=good, clock=clock)

    def ocsp_source(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
        req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
        responder = root_responder if issuer == dev.root.certificate else leaf_responder
        return responder.respond(req.public_bytes(serialization.Encoding.DER))

    tsa = TimeStampAuthority(dev.tsa.certificate, dev.tsa.private_key, clock=clock,
                             policy_oid=POLICY_OIDS[CertificateRole.TSA],
                             serial_source=lambda: secrets.randbits(63),
                             extra_certificates=[dev.issuing_ca.certificate])
    seal = dev.seal(uscc)
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    (key_dir / "k.pem").write_bytes(seal.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (key_dir / "c.pem").write_bytes(seal.certificate_pem + dev.chain_pem())
    key = FileKeyProvider({"s": FileKeySpec(key_dir / "k.pem", key_dir / "c.pem")}).get("s")
    ls = LicenseSigner(key, timestamper=InProcessTimeStamper(tsa),
                       revocation=RevocationMaterial(ocsp_source=ocsp_source))
    pdf = ls.seal_license(blank_pdf(), spec, at=AT)

    reader = PdfFileReader(io.BytesIO(pdf))
    vc = DocumentSecurityStore.read_dss(reader).as_validation_context({
        "trust_roots": as_asn1_certificates([dev.root.certificate]), "allow_fetching": False,
        "revocation_mode": "hard-fail"})
    status = validate_pdf_signature(reader.embedded_signatures[0], signer_validation_context=vc,
                                    ts_validation_context=vc)
    _assert_lta_seal(status)
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted

    # the revoked dev seal cannot seal
    revoked = dev.revoked_seal
    revoked_lookup = {revoked.serial: CertStatusInfo.revoked(AT - timedelta(days=1),
                                                             "key_compromise")}
    leaf_responder_r = OcspResponder(
        dev.ocsp.certificate, dev.ocsp.private_key, issuers=[dev.issuing_ca.certificate],
        status_lookup=lambda i, s: revoked_lookup.get(s, CertStatusInfo.good()), clock=clock)

    def ocsp_source_r(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
        req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
        responder = root_responder if issuer == dev.root.certificate else leaf_responder_r
        return responder.respond(req.public_bytes(serialization.Encoding.DER))

    (key_dir / "rk.pem").write_bytes(revoked.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (key_dir / "rc.pem").write_bytes(revoked.certificate_pem + dev.chain_pem())
    rkey = FileKeyProvider({"r": FileKeySpec(key_dir / "rk.pem", key_dir / "rc.pem")}).get("r")
    with pytest.raises(SealKeyRevoked):
        LicenseSigner(rkey, timestamper=InProcessTimeStamper(tsa),
                      revocation=RevocationMaterial(ocsp_source=ocsp_source_r)
                      ).seal_license(blank_pdf(), spec, at=AT)


# -- poppler pdfsig -------------------------------------------------------------------------------------

def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is required under CI=true")
        pytest.skip(f"{name} is not installed (poppler-utils / libnss3-tools)")
    return path


def _seal_block(output: str) -> str:
    blocks = re.split(r"^Signature #\d+:", output, flags=re.M)
    seal = [b for b in blocks if "Signature Field Name: Seal" in b]
    assert seal, output
    return seal[0]


def test_pdfsig_says_the_seal_is_valid(sealed: bytes, tmp_path: Path) -> None:
    pdfsig = _require_tool("pdfsig")
    path = tmp_path / "sealed.pdf"
    path.write_bytes(sealed)
    # pdfsig's exit code is always 0: read its text
    proc = subprocess.run([pdfsig, str(path)], capture_output=True, text=True, timeout=60)
    block = _seal_block(proc.stdout)
    assert "Signature Validation: Signature is Valid." in block
    assert "ETSI.CAdES.detached" in block


def _pdfsig_with_trusted_root(pdf: bytes, root: x509.Certificate, tmp_path: Path) -> str:
    pdfsig = _require_tool("pdfsig")
    certutil = _require_tool("certutil")
    db = tmp_path / "nss"
    db.mkdir()
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True,
                   capture_output=True, timeout=60)
    # pdfsig checks the signer for S/MIME (email signing) use: "C,," alone is not enough and
    # gives "Certificate issuer isn't Trusted"
    subprocess.run([certutil, "-A", "-d", f"sql:{db}", "-n", "root", "-t", "CT,C,C",
                    "-i", str(root_pem)], check=True, capture_output=True, timeout=60)
    path = tmp_path / "sealed.pdf"
    path.write_bytes(pdf)
    proc = subprocess.run([pdfsig, "-nssdir", f"sql:{db}", str(path)], capture_output=True,
                          text=True, timeout=120)
    return _seal_block(proc.stdout)


def test_pdfsig_with_the_root_in_an_nss_db(sealed: bytes, pki: MiniPKI, tmp_path: Path) -> None:
    block = _pdfsig_with_trusted_root(sealed, pki.root.certificate, tmp_path)
    assert "Signature Validation: Signature is Valid." in block
    # These certificates carry AIA OCSP URLs that nobody answers here: NSS then reports
    # "Unknown issue with Certificate or corrupted data." (PITFALLS) instead of trusting.
    assert re.search(r"Certificate Validation: (Certificate is Trusted\.|Unknown issue)", block)


def test_pdfsig_trusts_a_seal_whose_chain_has_no_ocsp_urls(tmp_path: Path) -> None:
    pki = MiniPKI(with_revocation_urls=False)
    key = _file_key(tmp_path / "k", pki, pki.seal.private_key, pki.seal.certificate, "seal")
    ls = LicenseSigner(key, timestamper=pki.timestamper(), revocation=RevocationMaterial())
    pdf = ls.seal_license(blank_pdf(), SealSpec(box=BOX, appearance_image=seal_image()), at=AT)
    block = _pdfsig_with_trusted_root(pdf, pki.root.certificate, tmp_path)
    assert "Signature Validation: Signature is Valid." in block
    assert "Certificate Validation: Certificate is Trusted." in block
