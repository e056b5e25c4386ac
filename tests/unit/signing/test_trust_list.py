import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from license_core.errors import ConfigurationError
from license_core.oids import POLICY_OIDS, CertificateRole
from license_core.qr_token import QrKey, QrKeyStatus
from signing.trust_list import (TRUST_LIST_TYP, InvalidTrustList, TrustListExpired,
                                UntrustedTrustList, build_trust_list, trust_list_header,
                                verify_trust_list)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TRUST_LIST_OID = POLICY_OIDS[CertificateRole.TRUST_LIST]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key, issuer: x509.Certificate | None, issuer_key, *, ca: bool,
          policy: str | None = None, days: int = 3650) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn))
               .issuer_name(issuer.subject if issuer else _name(cn))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(T0 - timedelta(days=1))
               .not_valid_after(T0 + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=not ca, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                   encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), critical=False))
    if policy:
        builder = builder.add_extension(x509.CertificatePolicies(
            [x509.PolicyInformation(x509.ObjectIdentifier(policy), None)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    def __init__(self, *, signer_policy: str | None = TRUST_LIST_OID, signer_days: int = 365):
        new = lambda: ec.generate_private_key(ec.SECP256R1())  # noqa: E731
        self.root_key, self.ca_key, self.signer_key, self.qr_key = new(), new(), new(), new()
        self.root = _cert("Root", self.root_key, None, self.root_key, ca=True)
        self.ca = _cert("Issuing CA", self.ca_key, self.root, self.root_key, ca=True)
        self.signer = _cert("Trust list", self.signer_key, self.ca, self.ca_key, ca=False,
                            policy=signer_policy, days=signer_days)
        self.qr_cert = _cert("QR", self.qr_key, self.ca, self.ca_key, ca=False,
                             policy=POLICY_OIDS[CertificateRole.QR_SIGNING])

    def build(self, **overrides) -> str:
        args = dict(signer_cert=self.signer, signer_key=self.signer_key, chain=[self.ca],
                    cas=[("Root", self.root), ("Issuing CA", self.ca)],
                    qr_keys=[QrKey.from_certificate(self.qr_cert),
                             QrKey(kid=b"\x07" * 8, public_key=self.root_key.public_key(),
                                   not_before=T0 - timedelta(days=400),
                                   not_after=T0 - timedelta(days=30),
                                   status=QrKeyStatus.RETIRED)],
                    issued_at=T0, lifetime=timedelta(days=7))
        args.update(overrides)
        return build_trust_list(**args)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_round_trip(pki: Pki) -> None:
    jws = pki.build()
    header = trust_list_header(jws)
    assert header["alg"] == "ES256" and header["typ"] == TRUST_LIST_TYP
    assert len(header["x5c"]) == 2
    assert len(_unb64url(jws.split(".")[2])) == 64  # raw r || s
    payload = verify_trust_list(jws, root=pki.root, at=T0 + timedelta(hours=1))
    assert payload.issued_at == T0 and payload.expires_at == T0 + timedelta(days=7)
    assert [ca.name for ca in payload.cas] == ["Root", "Issuing CA"]
    assert payload.cas[1].certificate == pki.ca
    active, retired = payload.qr_keys
    assert active == QrKey.from_certificate(pki.qr_cert)
    assert retired.status is QrKeyStatus.RETIRED
    data = json.loads(_unb64url(jws.split(".")[1]))
    assert data["qr_keys"][0]["alg"] == "ES256" and data["issued_at"] == "2026-01-01T00:00:00Z"
    assert set(data) == {"issued_at", "expires_at", "cas", "qr_keys"}


def test_chain_may_include_root(pki: Pki) -> None:
    jws = pki.build(chain=[pki.ca, pki.root])
    assert verify_trust_list(jws, root=pki.root, at=T0).issued_at == T0


def test_tampered_payload_fails(pki: Pki) -> None:
    head, payload, sig = pki.build().split(".")
    data = json.loads(_unb64url(payload))
    data["expires_at"] = "2099-01-01T00:00:00Z"
    forged = f"{head}.{_b64url(json.dumps(data).encode())}.{sig}"
    with pytest.raises(InvalidTrustList, match="signature"):
        verify_trust_list(forged, root=pki.root, at=T0)


def test_tampered_signature_fails(pki: Pki) -> None:
    head, payload, sig = pki.build().split(".")
    raw = bytearray(_unb64url(sig))
    raw[10] ^= 1
    with pytest.raises(InvalidTrustList):
        verify_trust_list(f"{head}.{payload}.{_b64url(bytes(raw))}", root=pki.root, at=T0)


def test_wrong_root_fails(pki: Pki) -> None:
    other = Pki()
    with pytest.raises(UntrustedTrustList):
        verify_trust_list(pki.build(), root=other.root, at=T0)


def test_missing_intermediate_fails(pki: Pki) -> None:
    with pytest.raises(UntrustedTrustList):
        verify_trust_list(pki.build(chain=[]), root=pki.root, at=T0)


def test_expired_trust_list_fails(pki: Pki) -> None:
    jws = pki.build()
    with pytest.raises(TrustListExpired):
        verify_trust_list(jws, root=pki.root, at=T0 + timedelta(days=7))
    with pytest.raises(TrustListExpired):
        verify_trust_list(jws, root=pki.root, at=T0 - timedelta(minutes=1))


def test_expired_signer_certificate_fails() -> None:
    pki = Pki(signer_days=3)
    with pytest.raises(UntrustedTrustList):
        verify_trust_list(pki.build(), root=pki.root, at=T0 + timedelta(days=5))


def test_signer_without_policy_oid_fails() -> None:
    pki = Pki(signer_policy=POLICY_OIDS[CertificateRole.DEPARTMENT_SEAL])
    with pytest.raises(ConfigurationError, match="TRUST_LIST"):
        pki.build()
    # A list signed anyway (by some other tool) is refused by the verifier.
    header = {"alg": "ES256", "typ": TRUST_LIST_TYP,
              "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                      for c in (pki.signer, pki.ca)]}
    good = Pki().build()
    payload = good.split(".")[1]
    signing_input = f"{_b64url(json.dumps(header).encode())}.{payload}"
    r, s = decode_dss_signature(pki.signer_key.sign(signing_input.encode(),
                                                    ec.ECDSA(hashes.SHA256())))
    jws = f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    with pytest.raises(UntrustedTrustList, match="TRUST_LIST"):
        verify_trust_list(jws, root=pki.root, at=T0)


def test_key_must_match_certificate(pki: Pki) -> None:
    with pytest.raises(ConfigurationError):
        pki.build(signer_key=pki.qr_key)


@pytest.mark.parametrize("jws", ["", "a.b", "a.b.c", "e30.e30.AAAA", "€.€.€"])
def test_garbage_fails(pki: Pki, jws: str) -> None:
    with pytest.raises(InvalidTrustList):
        verify_trust_list(jws, root=pki.root, at=T0)


def test_wrong_alg_fails(pki: Pki) -> None:
    head, payload, sig = pki.build().split(".")
    header = json.loads(_unb64url(head))
    header["alg"] = "none"
    with pytest.raises(InvalidTrustList, match="ES256"):
        verify_trust_list(f"{_b64url(json.dumps(header).encode())}.{payload}.{sig}",
                          root=pki.root, at=T0)
