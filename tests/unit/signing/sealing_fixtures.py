"""A tiny self-contained PKI for the signing tests.

It mirrors the shape of ``keys_dev.DevPKI`` (root → issuing CA → seal / TSA certificates, an OCSP
responder) but is built in memory with cryptography only, so the signing tests do not depend on
``keys_dev``. OCSP responses and CRLs are produced in-process for a pinned ``at`` time.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from PIL import Image, ImageDraw
from pyhanko.sign.timestamps.api import TimeStamper

from license_core.oids import ORGANIZATION_IDENTIFIER_OID, organization_identifier

__all__ = ["AT", "Entity", "MiniPKI", "blank_pdf", "seal_image", "require_softhsm",
           "shared_softhsm_token"]

# cryptography stamps OCSP ``producedAt`` with the wall clock, so the pinned time stays near it.
AT = datetime.now(timezone.utc).replace(microsecond=0)
BASE_URL = "http://127.0.0.1:8765"


@dataclass(frozen=True)
class Entity:
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey


def _name(cn: str, *, uscc: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "elicense test"),
             x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if uscc:
        attrs.append(x509.NameAttribute(x509.ObjectIdentifier(ORGANIZATION_IDENTIFIER_OID),
                                        organization_identifier(uscc)))
    return x509.Name(attrs)


@dataclass
class MiniPKI:
    """Root → issuing CA → {seal, TSA}; the issuing CA answers OCSP for its children."""

    at: datetime = AT
    with_revocation_urls: bool = True
    root: Entity = field(init=False)
    issuing_ca: Entity = field(init=False)
    seal: Entity = field(init=False)
    tsa: Entity = field(init=False)
    revoked: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root = self._make("Test Root", None, ca=True)
        self.issuing_ca = self._make("Test Issuing CA", self.root, ca=True)
        self.seal = self._make("Test Department Seal", self.issuing_ca, uscc="11110000000000000X")
        self.tsa = self._make("Test TSA", self.issuing_ca, tsa=True)

    # -- certificates -------------------------------------------------------------------
    def _make(self, cn: str, issuer: Entity | None, *, ca: bool = False, tsa: bool = False,
              uscc: str | None = None, public_key: ec.EllipticCurvePublicKey | None = None,
              ) -> Entity:
        key = ec.generate_private_key(ec.SECP256R1())
        pub = public_key or key.public_key()
        subject = _name(cn, uscc=uscc)
        issuer_name = issuer.certificate.subject if issuer else subject
        signing_key = issuer.private_key if issuer else key
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
             .public_key(pub).serial_number(x509.random_serial_number())
             .not_valid_before(self.at - timedelta(days=1))
             .not_valid_after(self.at + timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))
        if issuer is not None:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.certificate.public_key()), critical=False)
        if ca:
            b = b.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
        else:
            b = b.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=not tsa, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
        if tsa:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                                critical=True)
        if issuer is not None and not ca and self.with_revocation_urls:
            b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(f"{BASE_URL}/ocsp"))]), critical=False)
        if issuer is not None and ca and self.with_revocation_urls:
            b = b.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(f"{BASE_URL}/crl/root.crl")],
                relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
        return Entity(b.sign(signing_key, hashes.SHA256()), key)

    def issue_seal(self, public_key: ec.EllipticCurvePublicKey, cn: str = "HSM Seal") -> x509.Certificate:
        """Certify an externally held (e.g. in-token) public key as a department seal."""
        return self._make(cn, self.issuing_ca, uscc="11110000000000001Y",
                          public_key=public_key).certificate

    def issue_plain_seal(self, cn: str) -> Entity:
        return self._make(cn, self.issuing_ca, uscc="11110000000000002Z")

    # -- revocation ---------------------------------------------------------------------
    def ocsp_response(self, cert: x509.Certificate, issuer: x509.Certificate | None = None) -> bytes:
        """A CA-signed OCSP response for ``cert`` (issued by the issuing CA) valid at ``at``."""
        issuer = issuer or self.issuing_ca.certificate
        good = cert.serial_number not in self.revoked
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=issuer, algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD if good else ocsp.OCSPCertStatus.REVOKED,
            this_update=self.at - timedelta(minutes=5),
            next_update=self.at + timedelta(days=7),
            revocation_time=None if good else self.at - timedelta(days=1),
            revocation_reason=None if good else x509.ReasonFlags.key_compromise,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.issuing_ca.certificate)
        resp = b.sign(self.issuing_ca.private_key, hashes.SHA256())
        return resp.public_bytes(serialization.Encoding.DER)

    def root_crl(self) -> bytes:
        crl = (x509.CertificateRevocationListBuilder()
               .issuer_name(self.root.certificate.subject)
               .last_update(self.at - timedelta(hours=1))
               .next_update(self.at + timedelta(days=7))
               .add_extension(x509.CRLNumber(1), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   self.root.certificate.public_key()), critical=False)
               .sign(self.root.private_key, hashes.SHA256()))
        return crl.public_bytes(serialization.Encoding.DER)

    def timestamper(self) -> TimeStamper:
        """An in-process RFC 3161 TSA (``signing.tsa``) signing with the EC TSA key at ``at``."""
        from license_core.clock import FixedClock
        from license_core.oids import POLICY_OIDS, CertificateRole
        from signing.tsa import InProcessTimeStamper, TimeStampAuthority

        tsa = TimeStampAuthority(self.tsa.certificate, self.tsa.private_key,
                                 clock=FixedClock(self.at), policy_oid=POLICY_OIDS[CertificateRole.TSA],
                                 serial_source=lambda: secrets.randbits(64),
                                 extra_certificates=[self.issuing_ca.certificate])
        return InProcessTimeStamper(tsa)

    def ocsp_source(self, cert: x509.Certificate, issuer: x509.Certificate) -> bytes | None:
        """The callable form of revocation material: fresh OCSP for the issuing CA's children."""
        if cert.issuer != self.issuing_ca.certificate.subject:
            return None
        return self.ocsp_response(cert, issuer)


def blank_pdf(text: str = "e-license") -> bytes:
    """A one-page A4 PDF (built with pyHanko's writer, so no reportlab needed)."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

    w = PdfFileWriter()
    font = generic.DictionaryObject({
        generic.pdf_name("/Type"): generic.pdf_name("/Font"),
        generic.pdf_name("/Subtype"): generic.pdf_name("/Type1"),
        generic.pdf_name("/BaseFont"): generic.pdf_name("/Helvetica")})
    stream = b"BT /F1 24 Tf 72 760 Td (%s) Tj ET" % text.encode("latin-1")
    content = generic.StreamObject(stream_data=stream)
    resources = generic.DictionaryObject({generic.pdf_name("/Font"): generic.DictionaryObject(
        {generic.pdf_name("/F1"): w.add_object(font)})})
    w.insert_page(PageObject(contents=w.add_object(content), media_box=(0, 0, 595, 842),
                             resources=resources))
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def seal_image(size: int = 300) -> Image.Image:
    """A red round seal drawn with PIL, RGBA with transparent corners."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((6, 6, size - 6, size - 6), outline=(220, 20, 20, 255), width=10)
    c = size // 2
    d.regular_polygon((c, c, size // 6), 5, fill=(220, 20, 20, 255))
    return img


# -- SoftHSM2 -----------------------------------------------------------------------------------

_TOKEN: list[object] = []


def require_softhsm() -> None:
    """Skip when SoftHSM2 is missing — except under ``CI=true``, where that is a failure."""
    import os

    import pytest

    from signing.keys import SoftHsm2Token

    if not SoftHsm2Token.available():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("SoftHSM2 (softhsm2-util, libsofthsm2.so) is required under CI=true")
        pytest.skip("SoftHSM2 is not installed (apt install softhsm2)")


def shared_softhsm_token():  # -> signing.keys.SoftHsm2Token
    """One SoftHSM2 token per test process.

    SoftHSM2 reads its configuration once per process and does not see tokens that another
    process (softhsm2-util) creates afterwards, so every test shares this token and uses its own
    key labels.
    """
    import atexit
    import shutil
    import tempfile

    from signing.keys import SoftHsm2Token

    require_softhsm()
    if not _TOKEN:
        directory = tempfile.mkdtemp(prefix="elicense-softhsm-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        _TOKEN.append(SoftHsm2Token.create(directory, label="elicense-test", user_pin="1234",
                                           so_pin="12345678"))
    return _TOKEN[0]
