"""The development PKI: what it builds, what it writes, and that it reloads."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from keys_dev import DepartmentSpec, DevPKI
from license_core.errors import ConfigurationError, UnknownIssuer
from license_core.oids import POLICY_OIDS, CertificateRole

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
BASE = "http://127.0.0.1:8000"
DEPTS = [DepartmentSpec("91110000600037341L", "北京市市场监督管理局"),
         DepartmentSpec("11100000000013127D", "国家市场监督管理总局")]
ORG_ID = x509.ObjectIdentifier("2.5.4.97")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> DevPKI:
    return DevPKI.build(tmp_path_factory.mktemp("pki"), now=NOW, base_url=BASE, departments=DEPTS)


def _ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def _policy(cert: x509.Certificate) -> str:
    (info,) = _ext(cert, x509.CertificatePolicies).value
    return info.policy_identifier.dotted_string


def test_build_is_fast(tmp_path):
    start = time.perf_counter()
    DevPKI.build(tmp_path, now=NOW, base_url=BASE, departments=DEPTS)
    assert time.perf_counter() - start < 1.0


def test_labels_and_accessors(built):
    labels = {e.label for e in built.entities}
    assert labels == {"root", "issuing", "seal-91110000600037341L", "seal-11100000000013127D",
                      "revoked_seal", "expired_seal", "tsa", "ocsp", "qr", "trust_list"}
    assert built.root.role is CertificateRole.ROOT_CA
    assert built.issuing_ca.role is CertificateRole.ISSUING_CA
    assert built.tsa.role is CertificateRole.TSA
    assert built.ocsp.role is CertificateRole.OCSP
    assert built.qr.role is CertificateRole.QR_SIGNING
    assert built.trust_list.role is CertificateRole.TRUST_LIST
    assert built.seal(DEPTS[1].code).issuer_code == DEPTS[1].code
    assert [s.issuer_code for s in built.seals] == [d.code for d in DEPTS]
    with pytest.raises(UnknownIssuer):
        built.seal("91000000000000000X")


def test_every_key_is_p256_and_matches_its_certificate(built):
    for e in built.entities:
        assert isinstance(e.private_key, ec.EllipticCurvePrivateKey)
        assert isinstance(e.private_key.curve, ec.SECP256R1)
        assert e.private_key.public_key() == e.certificate.public_key()


def test_chain_and_common_extensions(built):
    root, issuing = built.root.certificate, built.issuing_ca.certificate
    root.verify_directly_issued_by(root)
    issuing.verify_directly_issued_by(root)
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "elicense Dev Root CA"
    assert issuing.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "elicense Dev Issuing CA"
    assert root.not_valid_after_utc - root.not_valid_before_utc == timedelta(days=20 * 365)
    assert issuing.not_valid_after_utc - issuing.not_valid_before_utc == timedelta(days=10 * 365)
    assert _ext(issuing, x509.BasicConstraints).value.ca
    for e in built.entities:
        cert = e.certificate
        assert _policy(cert) == POLICY_OIDS[e.role]
        assert _ext(cert, x509.BasicConstraints).critical
        _ext(cert, x509.SubjectKeyIdentifier)
        if e.label == "root":
            continue
        issuer = built.entity(e.issuer_label).certificate
        cert.verify_directly_issued_by(issuer)
        assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == \
            _ext(issuer, x509.SubjectKeyIdentifier).value.digest
        aia = {d.access_method: d.access_location.value
               for d in _ext(cert, x509.AuthorityInformationAccess).value}
        assert aia[AuthorityInformationAccessOID.OCSP] == f"{BASE}/pki/ocsp"
        assert aia[AuthorityInformationAccessOID.CA_ISSUERS] == \
            f"{BASE}/pki/ca/{e.issuer_label}.crt"
        dp = _ext(cert, x509.CRLDistributionPoints).value[0].full_name[0].value
        assert dp == f"{BASE}/pki/crl/{e.issuer_label}.crl"


def test_seal_profile(built):
    seal = built.seal(DEPTS[0].code).certificate
    subject = seal.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == DEPTS[0].name
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == DEPTS[0].name
    assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "CN"
    assert subject.get_attributes_for_oid(ORG_ID)[0].value == f"NTRCN-{DEPTS[0].code}"
    ku = _ext(seal, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert seal.not_valid_before_utc <= NOW < seal.not_valid_after_utc
    assert seal.not_valid_after_utc - seal.not_valid_before_utc == timedelta(days=3 * 365)


def test_tsa_and_ocsp_profiles(built):
    eku = _ext(built.tsa.certificate, x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    ocsp_cert = built.ocsp.certificate
    assert list(_ext(ocsp_cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    _ext(ocsp_cert, x509.OCSPNoCheck)


def test_revoked_and_expired_entities(built):
    expired = built.expired_seal
    assert expired.certificate.not_valid_after_utc < NOW
    assert expired.role is CertificateRole.DEPARTMENT_SEAL
    assert expired.issuer_code == DEPTS[0].code
    revoked = built.revoked_seal
    assert revoked.certificate.not_valid_before_utc <= NOW < revoked.certificate.not_valid_after_utc
    (rev,) = built.initial_revocations
    assert rev.serial == revoked.serial and rev.label == "revoked_seal"
    assert rev.issuer == built.issuing_ca.certificate.subject
    assert rev.revoked_at < NOW and rev.reason == "key_compromise"
    assert revoked.certificate.not_valid_before_utc < rev.revoked_at


def test_files_modes_and_manifest(built):
    path = built.path
    for e in built.entities:
        key_file = path / f"{e.label}.key.pem"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_bytes().startswith(b"-----BEGIN " + b"PRIVATE KEY-----")  # PKCS#8
        assert (path / f"{e.label}.crt.pem").read_bytes() == e.certificate_pem
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    by_label = {m["label"]: m for m in manifest["entities"]}
    assert by_label["seal-91110000600037341L"]["role"] == "department_seal"
    assert by_label["seal-91110000600037341L"]["issuer_code"] == "91110000600037341L"
    assert by_label["tsa"]["issuer_code"] is None
    assert int(by_label["ocsp"]["serial"]) == built.ocsp.serial
    assert (path / "revocations.json").exists()


def test_load_round_trip(built):
    loaded = DevPKI.load(built.path)
    assert [e.label for e in loaded.entities] == [e.label for e in built.entities]
    for a, b in zip(loaded.entities, built.entities):
        assert a.certificate == b.certificate
        assert a.role is b.role and a.issuer_code == b.issuer_code
        assert a.private_key.public_key() == b.certificate.public_key()
    assert loaded.initial_revocations == built.initial_revocations
    assert loaded.base_url == BASE


def test_load_of_nothing_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError):
        DevPKI.load(tmp_path)


def test_build_refuses_bad_specs(tmp_path):
    with pytest.raises(ConfigurationError):
        DevPKI.build(tmp_path, now=NOW, base_url=BASE, departments=[])
    with pytest.raises(ConfigurationError):
        DevPKI.build(tmp_path, now=NOW, base_url=BASE,
                     departments=[DepartmentSpec("123", "x")])


def test_openssl_accepts_the_chain(built, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the openssl CLI is required under CI=true")
        pytest.skip("the openssl CLI is not installed")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(built.chain_pem())
    at = str(int((NOW + timedelta(minutes=1)).timestamp()))

    def verify(label: str, *extra: str) -> str:
        proc = subprocess.run([openssl, "verify", "-CAfile", str(chain), "-attime", at, *extra,
                               str(Path(built.path) / f"{label}.crt.pem")],
                              capture_output=True, text=True, timeout=30)
        return proc.stdout + proc.stderr

    assert ": OK" in verify("seal-91110000600037341L")
    assert ": OK" in verify("tsa", "-purpose", "timestampsign")
    assert ": OK" in verify("ocsp", "-purpose", "ocsphelper")
    assert "certificate has expired" in verify("expired_seal")
