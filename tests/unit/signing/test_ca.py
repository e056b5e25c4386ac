"""The CA mechanism: issuance profiles, the store, revocation, CRLs (checked with openssl)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from keys_dev import DevPKI
from license_core.errors import ConfigurationError, NotFound, ValidationFailed
from license_core.oids import POLICY_OIDS, CertificateRole
from signing.ca import (
    CertificateAuthority,
    CertificateStore,
    InMemoryCertificateStore,
    issuer_key,
    parse_reason,
)

from .conftest import BASE_URL, NOW

USCC = "91110000600037341L"
RESIDENT_ID = "11010519491231002X"
ORG_ID = x509.ObjectIdentifier("2.5.4.97")
SERIAL_NUMBER = x509.ObjectIdentifier("2.5.4.5")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def _hex(serial: int) -> str:
    """A serial the way openssl prints it: the DER INTEGER's content octets in upper-case hex."""
    octets = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
    if octets[0] == 0 and len(octets) > 1 and octets[1] < 0x80:
        octets = octets[1:]
    return octets.hex().upper()


def _attr(cert: x509.Certificate, oid) -> str:
    return cert.subject.get_attributes_for_oid(oid)[0].value


def test_in_memory_store_satisfies_protocol():
    assert isinstance(InMemoryCertificateStore(), CertificateStore)


def test_department_seal_profile(dev_ca, signing_pki, cert_store):
    cert = dev_ca.issue_department_seal(_key().public_key(), uscc=USCC, name="北京市市场监督管理局",
                                    label="seal-new")
    assert _attr(cert, NameOID.COMMON_NAME) == "北京市市场监督管理局"
    assert _attr(cert, NameOID.ORGANIZATION_NAME) == "北京市市场监督管理局"
    assert _attr(cert, ORG_ID) == f"NTRCN-{USCC}"
    assert _attr(cert, NameOID.COUNTRY_NAME) == "CN"
    assert cert.issuer == signing_pki.issuing_ca.certificate.subject
    cert.verify_directly_issued_by(signing_pki.issuing_ca.certificate)
    policies = _ext(cert, x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == \
        [POLICY_OIDS[CertificateRole.DEPARTMENT_SEAL]]
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert not ku.value.key_cert_sign
    assert _ext(cert, x509.BasicConstraints).value.ca is False
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + timedelta(days=3 * 365)
    aia = {d.access_method: d.access_location.value
           for d in _ext(cert, x509.AuthorityInformationAccess).value}
    assert aia[AuthorityInformationAccessOID.OCSP] == f"{BASE_URL}/pki/ocsp"
    assert aia[AuthorityInformationAccessOID.CA_ISSUERS] == f"{BASE_URL}/pki/ca/issuing.crt"
    dp = _ext(cert, x509.CRLDistributionPoints).value[0].full_name[0].value
    assert dp == f"{BASE_URL}/pki/crl/issuing.crl"
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == \
        _ext(signing_pki.issuing_ca.certificate, x509.SubjectKeyIdentifier).value.digest
    record = cert_store.find_certificate(cert.serial_number,
                                         issuer_key(signing_pki.issuing_ca.certificate))
    assert record is not None and record.role is CertificateRole.DEPARTMENT_SEAL
    assert record.issuer_code == USCC and record.label == "seal-new"


@pytest.mark.parametrize("code_type,code", [("111", RESIDENT_ID), ("001", USCC)])
def test_holder_certificate_profile(dev_ca, code_type, code):
    cert = dev_ca.issue_holder_certificate(_key().public_key(), holder_code_type=code_type,
                                       holder_code=code, name="张三")
    assert _attr(cert, SERIAL_NUMBER) == f"{code_type}-{code}"
    assert _attr(cert, NameOID.COMMON_NAME) == "张三"
    policies = _ext(cert, x509.CertificatePolicies).value
    assert policies[0].policy_identifier.dotted_string == POLICY_OIDS[CertificateRole.HOLDER]
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment
    assert set(_ext(cert, x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION}


def test_rsa_holder_keys_are_accepted_but_small_ones_refused(dev_ca):
    big = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dev_ca.issue_holder_certificate(big.public_key(), holder_code_type="111",
                                holder_code=RESIDENT_ID, name="李四")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValidationFailed):
        dev_ca.issue_holder_certificate(small.public_key(), holder_code_type="111",
                                    holder_code=RESIDENT_ID, name="李四")


@pytest.mark.parametrize("kwargs", [
    {"holder_code_type": "999", "holder_code": RESIDENT_ID, "name": "x"},
    {"holder_code_type": "111", "holder_code": "123", "name": "x"},
    {"holder_code_type": "111", "holder_code": RESIDENT_ID, "name": ""},
])
def test_holder_certificate_rejects_bad_input(dev_ca, kwargs, cert_store):
    before = len(cert_store.records())
    with pytest.raises(ValidationFailed):
        dev_ca.issue_holder_certificate(_key().public_key(), **kwargs)
    assert len(cert_store.records()) == before  # nothing half-issued


def test_seal_rejects_bad_uscc(dev_ca):
    with pytest.raises(ValidationFailed):
        dev_ca.issue_department_seal(_key().public_key(), uscc="123", name="x")


def test_validity_is_clipped_to_the_ca(dev_ca, signing_pki):
    cert = dev_ca.issue_department_seal(_key().public_key(), uscc=USCC, name="x",
                                    validity=timedelta(days=365 * 50))
    assert cert.not_valid_after_utc == signing_pki.issuing_ca.certificate.not_valid_after_utc


def test_serials_are_unique_and_positive(dev_ca):
    serials = {dev_ca.issue_department_seal(_key().public_key(), uscc=USCC, name="x").serial_number
               for _ in range(20)}
    assert len(serials) == 20
    assert all(0 < s < 2 ** 159 for s in serials)


def test_constructor_checks(signing_pki, cert_store, pki_clock):
    with pytest.raises(ConfigurationError):
        CertificateAuthority(signing_pki.issuing_ca.certificate, signing_pki.root.private_key,
                             store=cert_store,
                             clock=pki_clock, base_url=BASE_URL)
    with pytest.raises(ConfigurationError):  # not a CA certificate
        CertificateAuthority(signing_pki.tsa.certificate, signing_pki.tsa.private_key,
                             store=cert_store,
                             clock=pki_clock, base_url=BASE_URL)


def test_revoke(dev_ca, signing_pki, cert_store, pki_clock):
    cert = dev_ca.issue_department_seal(_key().public_key(), uscc=USCC, name="x")
    pki_clock.advance(timedelta(hours=1))
    entry = dev_ca.revoke(cert.serial_number, "superseded")
    assert entry.revoked_at == NOW + timedelta(hours=1)
    assert entry.reason == "superseded"
    issuer = issuer_key(signing_pki.issuing_ca.certificate)
    assert cert_store.revocation_status(cert.serial_number, issuer) == entry
    pki_clock.advance(timedelta(hours=1))
    assert dev_ca.revoke(cert.serial_number, "key_compromise") == entry  # first revocation stands
    with pytest.raises(NotFound):
        dev_ca.revoke(12345, "key_compromise")
    with pytest.raises(ValidationFailed):
        dev_ca.revoke(signing_pki.seals[0].serial, "because")


def test_parse_reason_spellings():
    for text in ("key_compromise", "keyCompromise", "key-compromise", "KEY_COMPROMISE"):
        assert parse_reason(text) is x509.ReasonFlags.key_compromise
    with pytest.raises(ValidationFailed):
        parse_reason("remove_from_crl")


def test_crl_contents(dev_ca, signing_pki):
    issuing = signing_pki.issuing_ca.certificate
    first = dev_ca.crl()
    assert first.is_signature_valid(issuing.public_key())
    assert first.issuer == issuing.subject
    assert first.last_update_utc == NOW
    assert first.next_update_utc == NOW + timedelta(days=1)
    number = first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    # The dev PKI's revoked seal is there from the start, with its reason.
    entry = first.get_revoked_certificate_by_serial_number(signing_pki.revoked_seal.serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is \
        x509.ReasonFlags.key_compromise
    assert first.get_revoked_certificate_by_serial_number(signing_pki.seals[0].serial) is None

    revoked_at = dev_ca.clock.now() + timedelta(minutes=10)
    dev_ca.revoke(signing_pki.seals[0].serial, "superseded", at=revoked_at)
    # A CRL dated before the revocation does not list it; one dated after does.
    serial = signing_pki.seals[0].serial
    assert dev_ca.crl(at=NOW).get_revoked_certificate_by_serial_number(serial) is None
    second = dev_ca.crl(at=revoked_at + timedelta(seconds=1))
    assert second.get_revoked_certificate_by_serial_number(signing_pki.seals[0].serial) is not None
    later = second.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert later == number + 2


def test_crl_with_openssl(run_openssl, dev_ca, signing_pki, tmp_path, chain_file):
    holder_key = _key()
    cert = dev_ca.issue_holder_certificate(holder_key.public_key(), holder_code_type="111",
                                       holder_code=RESIDENT_ID, name="张三")
    cert_file = tmp_path / "holder.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    at = str(int((NOW + timedelta(minutes=5)).timestamp()))

    def write_crl() -> Path:
        crl = dev_ca.crl(at=NOW + timedelta(minutes=1))
        (tmp_path / "issuing.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
        (tmp_path / "issuing.crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return tmp_path / "issuing.crl"

    def verify() -> str:
        out = run_openssl("verify", "-crl_check", "-CRLfile", str(tmp_path / "issuing.crl.pem"),
                          "-CAfile", str(chain_file), "-attime", at, str(cert_file), check=False)
        return out.stdout + out.stderr

    write_crl()
    assert f"{cert_file}: OK" in verify()

    dev_ca.revoke(cert.serial_number, "key_compromise")
    crl_der = write_crl()
    text = run_openssl("crl", "-inform", "DER", "-in", str(crl_der), "-noout", "-text").stdout
    assert f"Serial Number: {_hex(cert.serial_number)}" in text
    assert f"Serial Number: {_hex(signing_pki.revoked_seal.serial)}" in text
    assert "Key Compromise" in text
    assert "X509v3 CRL Number" in text
    assert "Next Update: Mar  2 08:01:00 2026 GMT" in text
    checked = run_openssl("crl", "-inform", "DER", "-in", str(crl_der), "-noout", "-CAfile",
                          str(chain_file))
    assert "verify OK" in checked.stdout + checked.stderr
    assert "certificate revoked" in verify()


def test_store_crl_numbers_and_revocations_are_per_issuer():
    cert_store = InMemoryCertificateStore()
    assert [cert_store.next_crl_number("a"), cert_store.next_crl_number("a"),
            cert_store.next_crl_number("b")] == [1, 2, 1]
    cert_store.revoke(7, "a", at=NOW, reason="superseded")
    assert cert_store.revocation_status(7, "b") is None
    assert [e.serial for e in cert_store.revoked_serials("a")] == [7]
    assert cert_store.revoked_serials("b") == []


def test_dev_pki_ca_certificates_are_known_to_the_store(cert_store, signing_pki: DevPKI):
    issuer = issuer_key(signing_pki.issuing_ca.certificate)
    p = signing_pki
    for entity in (p.tsa, p.ocsp, p.qr, p.trust_list, *p.seals):
        assert cert_store.find_certificate(entity.serial, issuer) is not None
