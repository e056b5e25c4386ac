"""Certificate facts: chain to given roots, validity, status, role, holder identity, masking."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from keys_dev import DevPKI
from license_core.errors import InvalidCertificate
from license_core.holder_codes import HolderCodeType
from license_core.oids import CertificateRole
from signing.ca import CertificateAuthority, InMemoryCertificateStore
from signing.certificate_report import (
    ChainStatus,
    certificate_report,
    load_certificate,
    load_certificate_bundle,
    masked_subject,
)
from signing.ocsp import CertStatus, store_status_lookup

from .conftest import NOW

PERSON = "11010519491231002X"
ENTERPRISE = "91110000600037341L"


def _report(cert, pki: DevPKI, store=None, at=NOW, intermediates=None):  # type: ignore[no-untyped-def]
    return certificate_report(
        cert, trust_roots=[pki.root.certificate],
        intermediates=[pki.issuing_ca.certificate] if intermediates is None else intermediates,
        at=at, status_lookup=store_status_lookup(store) if store is not None else None)


def _holder(ca: CertificateAuthority, code: str = PERSON, code_type: str = "111",
            name: str = "张三", key=None):  # type: ignore[no-untyped-def]
    key = key or ec.generate_private_key(ec.SECP256R1())
    return ca.issue_holder_certificate(key.public_key(), holder_code_type=code_type,
                                       holder_code=code, name=name), key


def _self_signed_ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=30)).not_valid_after(NOW + timedelta(days=900))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def test_person_certificate_is_trusted_good_holder(signing_pki: DevPKI, dev_ca, cert_store):  # type: ignore[no-untyped-def]
    cert, _ = _holder(dev_ca)
    report = _report(cert, signing_pki, cert_store)
    assert report.trusted and report.chain_status is ChainStatus.TRUSTED
    assert [c.subject for c in report.chain] == [cert.subject, signing_pki.issuing_ca.certificate.subject,
                                                  signing_pki.root.certificate.subject]
    assert report.status is CertStatus.GOOD and report.within_validity
    assert report.role is CertificateRole.HOLDER
    assert report.holder is not None
    assert report.holder.code_type is HolderCodeType.RESIDENT_ID
    assert report.holder.code == PERSON and report.holder.code_valid
    assert report.holder.name == "张三" and report.holder.public_name == "张*"
    assert report.holder.masked_code == "1101************2X"
    assert report.valid and report.problems == ()


def test_enterprise_certificate(signing_pki: DevPKI, dev_ca, cert_store):  # type: ignore[no-untyped-def]
    cert, _ = _holder(dev_ca, ENTERPRISE, "001", "北京某某科技有限公司")
    report = _report(cert, signing_pki, cert_store)
    assert report.valid
    assert report.holder.code_type is HolderCodeType.USCC
    assert report.holder.public_name == "北京某某科技有限公司"  # enterprise names are public


def test_status_without_lookup_is_unknown_and_not_valid(signing_pki: DevPKI, dev_ca):  # type: ignore[no-untyped-def]
    cert, _ = _holder(dev_ca)
    report = _report(cert, signing_pki)
    assert report.trusted and report.status is CertStatus.UNKNOWN and not report.valid


def test_revoked(signing_pki: DevPKI, dev_ca, cert_store):  # type: ignore[no-untyped-def]
    cert, _ = _holder(dev_ca)
    dev_ca.revoke(cert.serial_number, "key_compromise")
    report = _report(cert, signing_pki, cert_store)
    assert report.revoked and report.revocation_reason == "key_compromise"
    assert report.revoked_at is not None and not report.valid


def test_expired_and_not_yet_valid(signing_pki: DevPKI, dev_ca, cert_store):  # type: ignore[no-untyped-def]
    cert, _ = _holder(dev_ca)
    late = _report(cert, signing_pki, cert_store, at=cert.not_valid_after_utc + timedelta(days=1))
    assert late.expired and not late.within_validity and not late.valid
    early = _report(cert, signing_pki, cert_store, at=cert.not_valid_before_utc - timedelta(days=1))
    assert early.not_yet_valid and not early.valid


def test_department_seal_has_seal_role_and_issuer_code(signing_pki: DevPKI, cert_store):  # type: ignore[no-untyped-def]
    seal = signing_pki.entity("seal-91110000600037341L").certificate
    report = _report(seal, signing_pki, cert_store)
    assert report.role is CertificateRole.DEPARTMENT_SEAL and report.holder is None
    assert report.issuer_code == "91110000600037341L" and report.valid


def test_foreign_ca_is_not_trusted(signing_pki: DevPKI):  # type: ignore[no-untyped-def]
    foreign_ca, foreign_key = _self_signed_ca("Some Other CA")
    store = InMemoryCertificateStore()
    ca = CertificateAuthority(foreign_ca, foreign_key, store=store,
                              clock=type("C", (), {"now": lambda self: NOW})(),
                              base_url="http://foreign")
    cert, _ = _holder(ca)
    report = _report(cert, signing_pki, store, intermediates=[foreign_ca])
    assert report.chain_status is ChainStatus.NO_PATH and not report.trusted
    assert report.status is CertStatus.UNKNOWN and not report.valid


def test_impostor_issuer_with_the_same_name(signing_pki: DevPKI):  # type: ignore[no-untyped-def]
    # A CA that copies the issuing CA's name but has its own key: the signature gives it away.
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    real = signing_pki.issuing_ca.certificate
    impostor = (x509.CertificateBuilder().subject_name(real.subject).issuer_name(real.subject)
                .public_key(impostor_key.public_key()).serial_number(7)
                .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=900))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(impostor_key, hashes.SHA256()))
    ca = CertificateAuthority(impostor, impostor_key, store=InMemoryCertificateStore(),
                              clock=type("C", (), {"now": lambda self: NOW})(),
                              base_url="http://x")
    cert, _ = _holder(ca)
    report = _report(cert, signing_pki)
    assert report.chain_status is ChainStatus.BAD_SIGNATURE and not report.trusted


def test_leaf_cannot_act_as_ca(signing_pki: DevPKI, dev_ca):  # type: ignore[no-untyped-def]
    holder_cert, holder_key = _holder(dev_ca)
    key = ec.generate_private_key(ec.SECP256R1())
    child = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "child")]))
             .issuer_name(holder_cert.subject).public_key(key.public_key()).serial_number(9)
             .not_valid_before(NOW - timedelta(hours=1)).not_valid_after(NOW + timedelta(days=1))
             .sign(holder_key, hashes.SHA256()))
    report = _report(child, signing_pki, intermediates=[signing_pki.issuing_ca.certificate,
                                                        holder_cert])
    assert report.chain_status is ChainStatus.INVALID_CA and not report.trusted


def test_bad_check_character_in_serial_number(signing_pki: DevPKI, dev_ca, cert_store):  # type: ignore[no-untyped-def]
    cert, _ = _holder(dev_ca, "110105194912310021")  # CA checks only the shape
    report = _report(cert, signing_pki, cert_store)
    assert report.holder is not None and not report.holder.code_valid
    assert not report.valid and any("check character" in p for p in report.problems)
    assert "110105194912310021" not in " ".join(report.problems)


def test_masked_subject(dev_ca):  # type: ignore[no-untyped-def]
    cert, _ = _holder(dev_ca)
    text = masked_subject(cert.subject)
    assert PERSON not in text and "张三" not in text
    assert "111-1101************2X" in text and "CN=张*" in text
    org, _ = _holder(dev_ca, ENTERPRISE, "001", "北京某某科技有限公司")
    org_text = masked_subject(org.subject)
    assert ENTERPRISE not in org_text and "北京某某科技有限公司" in org_text


def test_loading(signing_pki: DevPKI, dev_ca):  # type: ignore[no-untyped-def]
    cert, key = _holder(dev_ca)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert load_certificate(pem) == cert and load_certificate(der) == cert
    assert load_certificate(pem.decode()) == cert
    for garbage in (b"", b"   ", b"hello", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                    der[:-10], b"\x30" * 100_000):
        with pytest.raises(InvalidCertificate):
            load_certificate(garbage)
    p12 = pkcs12.serialize_key_and_certificates(
        b"x", key, cert, [signing_pki.issuing_ca.certificate],
        serialization.BestAvailableEncryption(b"pw"))
    leaf, extra = load_certificate_bundle(p12, password=b"pw")
    assert leaf == cert and extra == (signing_pki.issuing_ca.certificate,)
    with pytest.raises(InvalidCertificate):
        load_certificate_bundle(p12, password=b"wrong")
    with pytest.raises(InvalidCertificate):
        load_certificate_bundle(p12)
    chain_pem = pem + signing_pki.issuing_ca.certificate_pem
    leaf, extra = load_certificate_bundle(chain_pem)
    assert leaf == cert and len(extra) == 1


def test_rsa_holder_certificate(signing_pki: DevPKI, dev_ca, cert_store):  # type: ignore[no-untyped-def]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert, _ = _holder(dev_ca, key=key)
    assert _report(cert, signing_pki, cert_store).valid


def test_root_itself_is_an_anchor(signing_pki: DevPKI):  # type: ignore[no-untyped-def]
    report = _report(signing_pki.root.certificate, signing_pki)
    assert report.trusted and report.role is CertificateRole.ROOT_CA and report.holder is None
