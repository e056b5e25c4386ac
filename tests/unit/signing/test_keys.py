"""Key providers: PEM files, PKCS#12, PKCS#11 (SoftHSM2, keys generated inside the token)."""

from __future__ import annotations

import asyncio
import stat
import threading
import uuid
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from license_core.errors import ConfigurationError
from signing.keys import (
    FileKeyProvider,
    FileKeySpec,
    KeyProvider,
    Pkcs11KeyProvider,
    Pkcs12KeyProvider,
    Pkcs12KeySpec,
    SigningKey,
)

from .sealing_fixtures import MiniPKI, shared_softhsm_token


@pytest.fixture(scope="module")
def pki() -> MiniPKI:
    return MiniPKI()


def _pem_files(tmp_path: Path, pki: MiniPKI, *, passphrase: bytes | None = None) -> FileKeySpec:
    enc = (serialization.BestAvailableEncryption(passphrase) if passphrase
           else serialization.NoEncryption())
    key_path = tmp_path / "seal.key.pem"
    key_path.write_bytes(pki.seal.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    key_path.chmod(0o600)
    chain_path = tmp_path / "seal.chain.pem"
    # deliberately not in leaf-first order: the provider finds the leaf by its key
    chain_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (
        pki.issuing_ca.certificate, pki.seal.certificate, pki.root.certificate)))
    return FileKeySpec(key_path, chain_path, passphrase)


def _signs(key: SigningKey, data: bytes = b"payload") -> None:
    sig = asyncio.run(key.signer.async_sign_raw(data, "sha256"))
    key.certificate.public_key().verify(sig, data, ec.ECDSA(hashes.SHA256()))


# -- files ----------------------------------------------------------------------------------------

def test_file_provider_builds_a_cached_signer_with_chain(tmp_path: Path, pki: MiniPKI) -> None:
    provider = FileKeyProvider({"seal": _pem_files(tmp_path, pki)})
    assert isinstance(provider, KeyProvider)
    key = provider.get("seal")
    assert key.certificate == pki.seal.certificate
    assert set(key.chain) == {pki.issuing_ca.certificate, pki.root.certificate}
    assert key.full_chain[0] == pki.seal.certificate
    assert provider.get("seal") is key  # built once, reused
    assert provider.labels() == ("seal",)
    _signs(key)


def test_file_provider_encrypted_key(tmp_path: Path, pki: MiniPKI) -> None:
    provider = FileKeyProvider({"seal": _pem_files(tmp_path, pki, passphrase=b"s3cret")})
    _signs(provider.get("seal"))


def test_file_provider_errors(tmp_path: Path, pki: MiniPKI) -> None:
    spec = _pem_files(tmp_path, pki)
    with pytest.raises(ConfigurationError):
        FileKeyProvider({"seal": spec}).get("other")
    wrong_chain = tmp_path / "wrong.pem"
    wrong_chain.write_bytes(pki.tsa.certificate.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigurationError, match="no certificate matches"):
        FileKeyProvider({"seal": FileKeySpec(spec.key_path, wrong_chain)}).get("seal")
    with pytest.raises(ConfigurationError):
        FileKeyProvider({"seal": FileKeySpec(tmp_path / "missing.pem", spec.chain_path)}).get("seal")
    assert stat.S_IMODE(spec.key_path.stat().st_mode) == 0o600


# -- PKCS#12 --------------------------------------------------------------------------------------

def test_pkcs12_provider(tmp_path: Path, pki: MiniPKI) -> None:
    p12 = tmp_path / "seal.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"seal", pki.seal.private_key, pki.seal.certificate,
        [pki.issuing_ca.certificate, pki.root.certificate],
        serialization.BestAvailableEncryption(b"pw")))
    provider = Pkcs12KeyProvider({"seal": Pkcs12KeySpec(p12, b"pw")})
    key = provider.get("seal")
    assert key.certificate == pki.seal.certificate
    assert pki.issuing_ca.certificate in key.chain
    _signs(key)
    with pytest.raises(ConfigurationError):
        Pkcs12KeyProvider({"seal": Pkcs12KeySpec(p12, b"wrong")}).get("seal")


# -- PKCS#11 (SoftHSM2) ---------------------------------------------------------------------------

def test_pkcs11_key_generated_in_token_is_not_extractable(pki: MiniPKI) -> None:
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import AttributeSensitive

    token = shared_softhsm_token()
    label = f"seal-{uuid.uuid4().hex[:8]}"
    public_key = token.generate_key(label)
    assert isinstance(public_key.curve, ec.SECP256R1)
    cert = pki.issue_seal(public_key)
    token.store_certificate(label, cert)

    with token.session(rw=False) as sess:
        priv = sess.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        assert priv[Attribute.SENSITIVE] is True
        assert priv[Attribute.EXTRACTABLE] is False
        with pytest.raises(AttributeSensitive):
            priv[Attribute.VALUE]
        (cert_obj,) = sess.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                        Attribute.LABEL: label})
        assert cert_obj[Attribute.VALUE] == cert.public_bytes(serialization.Encoding.DER)
        assert cert_obj[Attribute.ID] == label.encode()


def test_pkcs11_provider_signs_with_token_key(pki: MiniPKI) -> None:
    token = shared_softhsm_token()
    label = f"seal-{uuid.uuid4().hex[:8]}"
    cert = pki.issue_seal(token.generate_key(label))
    token.store_certificate(label, cert)

    provider = token.key_provider(ca_chain=[pki.issuing_ca.certificate], labels=[label])
    assert isinstance(provider, Pkcs11KeyProvider)
    key = provider.get(label)
    assert key.certificate == cert
    assert provider.get(label) is key
    _signs(key)

    # one session shared by concurrent signers: token operations are serialised
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            _signs(key, b"payload-%d" % i)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    with pytest.raises(InvalidSignature):
        sig = asyncio.run(key.signer.async_sign_raw(b"a", "sha256"))
        cert.public_key().verify(sig, b"b", ec.ECDSA(hashes.SHA256()))
    provider.close()


def test_pkcs11_provider_errors(pki: MiniPKI) -> None:
    token = shared_softhsm_token()
    with pytest.raises(ConfigurationError, match="0 certificates"):
        token.key_provider().get("no-such-label")
    bad_pin = Pkcs11KeyProvider(token_label=token.label, user_pin="0000",
                                softhsm2_conf=token.conf_path)
    with pytest.raises(ConfigurationError, match="cannot log in"):
        bad_pin.get("anything")
    with pytest.raises(ConfigurationError, match="no PKCS#11 token"):
        Pkcs11KeyProvider(token_label="no-such-token", user_pin="1234",
                          softhsm2_conf=token.conf_path).get("x")


def test_pkcs11_sessions_do_not_log_each_other_out(pki: MiniPKI) -> None:
    """PKCS#11 login is per application: closing one session must not break another signer."""
    token = shared_softhsm_token()
    label = f"seal-{uuid.uuid4().hex[:8]}"
    token.store_certificate(label, pki.issue_seal(token.generate_key(label)))
    first = token.key_provider()
    key = first.get(label)
    _signs(key)
    # other users of the token come and go: a second provider, an admin session
    second = token.key_provider()
    _signs(second.get(label))
    second.close()
    with token.session(rw=False):
        pass
    token.generate_key(f"other-{uuid.uuid4().hex[:8]}")
    _signs(key)
    first.close()
