"""The platform PKI at run time: CA, TSA, OCSP responder, CRLs and department seal keys.

Certificates, revocations and (encrypted) keys live in the database, so every worker and machine
sharing it sees one PKI. The development PKI is built once, under the installation lock, by
``install_dev_pki``. Revocation state is read from the database on every use (never cached), so a
revoked seal key is refused by every worker at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from directory import catalog as catalog_q
from directory import pki_store as q
from keys_dev.pki import DepartmentSpec, DevPKI
from license_core.clock import Clock
from license_core.errors import ConfigurationError, SealKeyRevoked, UnknownIssuer
from license_core.oids import POLICY_OIDS, CertificateRole
from signing.ca import CertificateAuthority, issuer_key
from signing.ocsp import OcspResponder, store_status_lookup
from signing.tsa import TimeStampAuthority

from signing.keys import Pkcs11Token

from ..container import Container
from ..settings import Settings
from .cert_store import DatabaseCertificateStore

__all__ = ["SealIdentity", "PlatformPKI", "install_dev_pki", "platform_pki", "pkcs11_token"]

_PLATFORM_LABELS = {CertificateRole.ROOT_CA: "root", CertificateRole.ISSUING_CA: "issuing",
                    CertificateRole.TSA: "tsa", CertificateRole.OCSP: "ocsp",
                    CertificateRole.QR_SIGNING: "qr", CertificateRole.TRUST_LIST: "trust_list"}


@dataclass(frozen=True)
class SealIdentity:
    """A department's current seal: its label, certificate, key and chain (issuing CA, root)."""

    label: str
    issuer_code: str
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | None  # None: the key lives in the PKCS#11 token
    chain: tuple[x509.Certificate, ...]
    pkcs11_label: str | None = None


def _encrypt_key(container: Container, label: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return container.cipher.encrypt(der, context=b"key:" + label.encode())


def _decrypt_key(container: Container, label: str, blob: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        der = container.cipher.decrypt(blob, context=b"key:" + label.encode())
    except Exception as exc:  # cryptography.exceptions.InvalidTag
        raise ConfigurationError(
            f"cannot decrypt stored key {label!r}: ELICENSE_SECRET_KEY differs from the one the "
            "PKI was created with; set the same secret on every machine") from exc
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def pkcs11_token(settings: Settings) -> Pkcs11Token | None:
    """The configured PKCS#11 token for department seal keys, or None (keys in the database).

    Raises ConfigurationError when the module is set without a token label and PIN."""
    if not settings.pkcs11_module:
        return None
    if not settings.pkcs11_token_label or not settings.pkcs11_pin:
        raise ConfigurationError("ELICENSE_PKCS11_MODULE needs ELICENSE_PKCS11_TOKEN_LABEL and "
                                 "ELICENSE_PKCS11_PIN")
    return Pkcs11Token(module_path=settings.pkcs11_module, label=settings.pkcs11_token_label,
                       user_pin=settings.pkcs11_pin, softhsm2_conf=settings.softhsm2_conf)


def install_dev_pki(container: Container) -> list[str]:
    """Build the development PKI into the database once (caller holds the installation lock)."""
    settings = container.settings
    with container.session() as session:
        if q.get_key(session, label="issuing") is not None:
            return []
        departments = [DepartmentSpec(i.code, i.name) for i in catalog_q.list_issuers(session)]
    if settings.is_production:
        raise ConfigurationError("production refuses the development PKI: configure a CA")
    if not departments:
        raise ConfigurationError("the catalog has no issuers to build seal certificates for")
    now = container.clock.now()
    pki = DevPKI.build(settings.home / "pki", now=now, base_url=settings.base_url,
                       departments=departments)
    store = DatabaseCertificateStore(container.sessions, container.cipher)
    with container.session() as session, session.begin():
        for entity in pki.entities:
            q.add_key(session, label=entity.label, role=entity.role.value,
                      issuer_code=entity.issuer_code,
                      certificate_der=entity.certificate_der,
                      key_enc=_encrypt_key(container, entity.label, entity.private_key),
                      pkcs11_ref=None,
                      status="test" if entity.label in ("revoked_seal", "expired_seal")
                      else "active", at=now)
    for entity in pki.entities:
        store.record_certificate(entity.certificate, role=entity.role, label=entity.label,
                                 issuer_code=entity.issuer_code)
    for revocation in pki.initial_revocations:
        store.revoke(revocation.serial, issuer_key(revocation.issuer), at=revocation.revoked_at,
                     reason=revocation.reason)
    return [f"development PKI ({len(departments)} department seals) in {pki.path}"]


_EMBEDDED_OCSP_BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class _ShiftedClock:
    base: Clock
    offset: timedelta

    def now(self) -> datetime:
        return self.base.now() + self.offset


class PlatformPKI:
    """Loaded once per process from the database; department seals looked up per use."""

    def __init__(self, container: Container) -> None:
        self._container = container
        self._lock = threading.Lock()
        self.store = DatabaseCertificateStore(container.sessions, container.cipher)
        with container.session() as session:
            rows = {label: q.get_key(session, label=label) for label in _PLATFORM_LABELS.values()}
        missing = [label for label, row in rows.items() if row is None]
        if missing:
            raise ConfigurationError(f"the PKI is not installed (missing {missing}): run "
                                     "`elicense init`")
        self._certs = {label: x509.load_der_x509_certificate(row.certificate_der)
                       for label, row in rows.items() if row is not None}
        self._keys = {label: _decrypt_key(container, label, row.key_enc)
                      for label, row in rows.items() if row is not None and row.key_enc}
        clock = container.clock
        base_url = container.settings.base_url
        self.root = self._certs["root"]
        self.issuing = self._certs["issuing"]
        self.ca = CertificateAuthority(self.issuing, self._keys["issuing"], store=self.store,
                                       clock=clock, base_url=base_url, ca_name="issuing")
        self.root_ca = CertificateAuthority(self.root, self._keys["root"], store=self.store,
                                            clock=clock, base_url=base_url, ca_name="root")
        self.tsa = TimeStampAuthority(self._certs["tsa"], self._keys["tsa"], clock=clock,
                                      policy_oid=POLICY_OIDS[CertificateRole.TSA],
                                      serial_source=self.store.next_serial,
                                      extra_certificates=(self.issuing,))
        self.ocsp = OcspResponder(self._certs["ocsp"], self._keys["ocsp"],
                                  issuers=[self.issuing], status_lookup=store_status_lookup(
                                      self.store), clock=clock)
        # Responses embedded at sealing are dated a little in the past: a seal's signing time
        # is taken before rendering, and a response newer than it is "too recent" for
        # validation at that time. Status only moves good -> revoked, so a response that is
        # good now was true minutes ago too.
        self._embedding_ocsp = OcspResponder(
            self._certs["ocsp"], self._keys["ocsp"], issuers=[self.issuing],
            status_lookup=store_status_lookup(self.store),
            clock=_ShiftedClock(clock, -_EMBEDDED_OCSP_BACKDATE))
        self._seals: dict[str, SealIdentity] = {}
        self._root_crl: tuple[datetime, bytes] | None = None

    # -- platform entities --------------------------------------------------------------------

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return (self.issuing, self.root)

    def certificate(self, label: str) -> x509.Certificate:
        return self._certs[label]

    def private_key(self, label: str) -> ec.EllipticCurvePrivateKey:
        return self._keys[label]

    def ca_certificate(self, name: str) -> x509.Certificate | None:
        return {"root": self.root, "issuing": self.issuing}.get(name)

    def crl(self, name: str, at: datetime | None = None) -> x509.CertificateRevocationList | None:
        authority = {"root": self.root_ca, "issuing": self.ca}.get(name)
        return authority.crl(at) if authority else None

    def ocsp_source(self, cert: x509.Certificate, issuer: x509.Certificate) -> bytes | None:
        """A fresh OCSP response for a certificate of the issuing CA (embedded at sealing)."""
        if cert.issuer != self.issuing.subject:
            return None
        request = (ocsp.OCSPRequestBuilder()
                   .add_certificate(cert, issuer, hashes.SHA256()).build())
        return self._embedding_ocsp.respond(request.public_bytes(serialization.Encoding.DER))

    def root_crl_der(self) -> bytes:
        """The root CRL for embedding, reissued at most hourly (root revocations are rare)."""
        now = self._container.clock.now()
        cached = self._root_crl
        if cached is None or now - cached[0] > timedelta(hours=1) or now < cached[0]:
            der = self.root_ca.crl(now).public_bytes(serialization.Encoding.DER)
            self._root_crl = cached = (now, der)
        return cached[1]

    # -- department seals ---------------------------------------------------------------------

    def seal_for(self, issuer_code: str) -> SealIdentity:
        """The department's current seal identity; created on first use for a new department.

        Raises:
            SealKeyRevoked: the current seal certificate is revoked and not yet replaced.
            UnknownIssuer: no such department in the directory.
        """
        container = self._container
        with container.session() as session:
            row = q.active_key(session, role=CertificateRole.DEPARTMENT_SEAL.value,
                               issuer_code=issuer_code)
            label = row.label if row is not None else None
            status = row.status if row is not None else None
        if label is None:
            return self.rotate(issuer_code)
        cert = self._seals[label].certificate if label in self._seals else None
        if status == "revoked" or (cert is not None and self.store.revocation_status(
                cert.serial_number, issuer_key(cert.issuer)) is not None):
            raise SealKeyRevoked(
                f"the seal certificate of {issuer_code} is revoked; an operator must run "
                f"`elicense keys rotate --issuer {issuer_code}` before sealing again")
        cached = self._seals.get(label)
        if cached is not None:
            return cached
        with container.session() as session:
            row = q.get_key(session, label=label)
            assert row is not None
            cert = x509.load_der_x509_certificate(row.certificate_der)
            if row.pkcs11_ref:
                identity = SealIdentity(label, issuer_code, cert, None, self.chain,
                                        pkcs11_label=row.pkcs11_ref)
            else:
                assert row.key_enc is not None
                identity = SealIdentity(label, issuer_code, cert,
                                        _decrypt_key(container, label, row.key_enc), self.chain)
        if self.store.revocation_status(identity.certificate.serial_number,
                                        issuer_key(identity.certificate.issuer)) is not None:
            raise SealKeyRevoked(f"the seal certificate of {issuer_code} is revoked; run "
                                 f"`elicense keys rotate --issuer {issuer_code}`")
        with self._lock:
            self._seals[label] = identity
        return identity

    def rotate(self, issuer_code: str) -> SealIdentity:
        """Give the department a new seal key and certificate; the old one is retired (documents
        sealed with it keep verifying: the certificate stays valid and unrevoked)."""
        container = self._container
        now = container.clock.now()
        with container.session() as session:
            issuer = catalog_q.get_issuer(session, code=issuer_code)
            name = issuer.name
        label = f"seal-{issuer_code}-{now.strftime('%Y%m%d%H%M%S%f')}"
        token = pkcs11_token(container.settings)
        key: ec.EllipticCurvePrivateKey | None = None
        if token is not None:  # generated inside the HSM, never leaves it
            public_key = token.generate_key(label)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            public_key = key.public_key()
        cert = self.ca.issue_department_seal(public_key, uscc=issuer_code, name=name,
                                             label=label)
        if token is not None:
            token.store_certificate(label, cert)
        with container.session() as session, session.begin():
            previous = q.active_key(session, role=CertificateRole.DEPARTMENT_SEAL.value,
                                    issuer_code=issuer_code)
            if previous is not None and previous.status == "active":
                q.set_key_status(session, label=previous.label, status="retired")
            elif previous is not None and previous.status == "revoked":
                q.set_key_status(session, label=previous.label, status="revoked-retired")
            q.add_key(session, label=label, role=CertificateRole.DEPARTMENT_SEAL.value,
                      issuer_code=issuer_code,
                      certificate_der=cert.public_bytes(serialization.Encoding.DER),
                      key_enc=_encrypt_key(container, label, key) if key else None,
                      pkcs11_ref=label if token is not None else None,
                      status="active", at=now + timedelta(microseconds=1))
        identity = SealIdentity(label, issuer_code, cert, key, self.chain,
                                pkcs11_label=label if token is not None else None)
        with self._lock:
            self._seals[label] = identity
        return identity

    def revoke_current(self, issuer_code: str, *, reason: str) -> x509.Certificate:
        """Revoke the department's current seal certificate (OCSP and CRL say so at once)."""
        container = self._container
        with container.session() as session:
            row = q.active_key(session, role=CertificateRole.DEPARTMENT_SEAL.value,
                               issuer_code=issuer_code)
            if row is None:
                raise UnknownIssuer(f"{issuer_code} has no seal certificate")
            label, der = row.label, row.certificate_der
        cert = x509.load_der_x509_certificate(der)
        self.ca.revoke(cert.serial_number, reason)
        with container.session() as session, session.begin():
            q.set_key_status(session, label=label, status="revoked")
        return cert


def platform_pki(container: Container) -> PlatformPKI:
    """The process-wide PlatformPKI of a container (built on first use)."""
    return container.singleton("pki", lambda: PlatformPKI(container))
