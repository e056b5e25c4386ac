"""Detached CMS verification facts: integrity, signature, signer trust; never an exception."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from keys_dev import DevPKI
from license_core.oids import CertificateRole
from signing.cms import verify_detached_cms
from signing.ocsp import store_status_lookup

from .conftest import NOW

CONTENT = "申请材料 application form v1\n".encode()


def _sign(cert, key, content: bytes = CONTENT, *, encoding=serialization.Encoding.DER,
          certs=()) -> bytes:  # type: ignore[no-untyped-def]
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(cert, key, hashes.SHA256())
    for extra in certs:
        builder = builder.add_certificate(extra)
    return builder.sign(encoding, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])


@pytest.fixture
def holder(dev_ca):  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    cert = dev_ca.issue_holder_certificate(key.public_key(), holder_code_type="111",
                                           holder_code="11010519491231002X", name="张三")
    return cert, key


def _verify(pki: DevPKI, content: bytes, signature: bytes, store=None, roots=None):  # type: ignore[no-untyped-def]
    return verify_detached_cms(
        content, signature,
        trust_roots=[pki.root.certificate] if roots is None else roots,
        intermediates=[pki.issuing_ca.certificate], at=NOW,
        status_lookup=store_status_lookup(store) if store is not None else None)


def test_valid_signature(signing_pki: DevPKI, holder, cert_store):  # type: ignore[no-untyped-def]
    cert, key = holder
    report = _verify(signing_pki, CONTENT, _sign(cert, key), cert_store)
    assert report.parsed and report.error is None
    assert report.intact and report.signature_valid and report.trusted and report.valid
    assert report.signer == cert and report.signer_count == 1
    assert report.digest_algorithm == "sha256" and not report.weak_algorithm
    assert report.signing_time is not None and report.signing_time.tzinfo is not None
    assert report.certificate.role is CertificateRole.HOLDER


def test_flipped_content_byte_is_not_intact(signing_pki: DevPKI, holder, cert_store):  # type: ignore[no-untyped-def]
    cert, key = holder
    tampered = bytearray(CONTENT)
    tampered[0] ^= 0x01
    report = _verify(signing_pki, bytes(tampered), _sign(cert, key), cert_store)
    assert report.parsed and not report.intact and not report.valid
    assert report.signature_valid  # the signed attributes themselves are untouched


def test_tampered_signature_value(signing_pki: DevPKI, holder, cert_store):  # type: ignore[no-untyped-def]
    cert, key = holder
    sig = bytearray(_sign(cert, key))
    # The ECDSA signature value is the last OCTET STRING: flip its last byte.
    sig[-1] ^= 0x01
    report = _verify(signing_pki, CONTENT, bytes(sig), cert_store)
    assert not report.valid and not report.signature_valid


def test_untrusted_signer(signing_pki: DevPKI, holder, cert_store):  # type: ignore[no-untyped-def]
    cert, key = holder
    report = _verify(signing_pki, CONTENT, _sign(cert, key), cert_store, roots=[])
    assert report.intact and report.signature_valid and not report.trusted and not report.valid


def test_revoked_signer(signing_pki: DevPKI, holder, cert_store, dev_ca):  # type: ignore[no-untyped-def]
    cert, key = holder
    dev_ca.revoke(cert.serial_number, "key_compromise")
    report = _verify(signing_pki, CONTENT, _sign(cert, key), cert_store)
    assert report.intact and report.trusted and report.certificate.revoked and not report.valid


def test_rsa_and_pem_and_shipped_chain(signing_pki: DevPKI, dev_ca, cert_store):  # type: ignore[no-untyped-def]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = dev_ca.issue_holder_certificate(key.public_key(), holder_code_type="001",
                                           holder_code="91110000600037341L", name="某某公司")
    pem = _sign(cert, key, encoding=serialization.Encoding.PEM,
                certs=[signing_pki.issuing_ca.certificate])
    report = verify_detached_cms(CONTENT, pem, trust_roots=[signing_pki.root.certificate],
                                 at=NOW, status_lookup=store_status_lookup(cert_store))
    assert report.valid, report


@pytest.mark.parametrize("garbage", [b"", b"garbage", b"\x30\x80" * 50, b"\x30\x03\x02\x01\x01",
                                     base64.b64encode(b"x" * 100),
                                     b"-----BEGIN PKCS7-----\n!!\n-----END PKCS7-----\n"])
def test_garbage_never_raises(signing_pki: DevPKI, garbage: bytes):  # type: ignore[no-untyped-def]
    report = _verify(signing_pki, CONTENT, garbage)
    assert not report.parsed and report.error and not report.valid


def test_truncated_and_attached(signing_pki: DevPKI, holder):  # type: ignore[no-untyped-def]
    cert, key = holder
    sig = _sign(cert, key)
    assert not _verify(signing_pki, CONTENT, sig[:-7]).parsed
    attached = (pkcs7.PKCS7SignatureBuilder().set_data(CONTENT)
                .add_signer(cert, key, hashes.SHA256())
                .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    report = _verify(signing_pki, CONTENT, attached)
    assert not report.parsed and "detached" in report.error
