"""A development PKI, built at run time and written to a directory (never into git).

``DevPKI.build`` makes a root CA, an issuing CA and, under the issuing CA, one seal certificate per
department plus the platform's TSA, OCSP signer, QR-signing and trust-list certificates, and two
labelled test entities: ``revoked_seal`` (revoked in the PKI's revocation state) and
``expired_seal`` (validity ended before ``now``). All keys are EC P-256, so a build takes a few
milliseconds.

Files written to ``path``: ``<label>.crt.pem``, ``<label>.key.pem`` (PKCS#8, unencrypted, mode
0600), ``manifest.json`` (labels, roles, issuer codes, serials) and ``revocations.json`` (the
initial revocation state, to be loaded into the certificate store).

This module imports only ``license_core``, ``cryptography`` and the standard library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from license_core.clock import utc
from license_core.errors import ConfigurationError, UnknownIssuer
from license_core.oids import (
    ORGANIZATION_IDENTIFIER_OID,
    POLICY_OIDS,
    CertificateRole,
    organization_identifier,
)

__all__ = [
    "DepartmentSpec",
    "DevEntity",
    "DevRevocation",
    "DevPKI",
    "ROOT_LABEL",
    "ISSUING_LABEL",
    "ROOT_CA_NAME",
    "ISSUING_CA_NAME",
    "seal_label",
]

ROOT_LABEL = "root"
ISSUING_LABEL = "issuing"
ROOT_CA_NAME = "elicense Dev Root CA"
ISSUING_CA_NAME = "elicense Dev Issuing CA"
_ORG = "elicense Dev"
_MANIFEST = "manifest.json"
_REVOCATIONS = "revocations.json"
_FORMAT_VERSION = 1

_YEAR = timedelta(days=365)
# Leaf certificates start a little before ``now`` so that a signer pinned at ``now`` is inside.
_LEAF_BACKDATE = timedelta(hours=1)
# The CAs are older than every test entity (the expired seal was valid once, under them).
_CA_BACKDATE = timedelta(days=3 * 365)

_ORG_ID = x509.ObjectIdentifier(ORGANIZATION_IDENTIFIER_OID)


def seal_label(uscc: str) -> str:
    """The label of a department's (current) seal certificate."""
    return f"seal-{uscc}"


@dataclass(frozen=True)
class DepartmentSpec:
    """A department that gets a seal certificate: its USCC (18 chars) and Chinese name."""

    code: str
    name: str


@dataclass(frozen=True)
class DevEntity:
    """One certificate of the dev PKI with its private key."""

    label: str
    role: CertificateRole
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey
    issuer_label: str
    issuer_code: str | None = None  # the department USCC, for seal certificates

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class DevRevocation:
    """A revocation that the dev PKI starts with (load it into the certificate store)."""

    label: str
    serial: int
    issuer_label: str
    issuer: x509.Name
    revoked_at: datetime
    reason: str  # RFC 5280 reason as an ``x509.ReasonFlags`` member name, e.g. "key_compromise"


class DevPKI:
    """The labelled entities of a development PKI.

    Build with :meth:`build`, reopen with :meth:`load`.
    """

    def __init__(self, path: Path, entities: Sequence[DevEntity],
                 initial_revocations: Sequence[DevRevocation], *, base_url: str) -> None:
        self.path = Path(path)
        self.base_url = base_url
        self._entities = {e.label: e for e in entities}
        self.initial_revocations: tuple[DevRevocation, ...] = tuple(initial_revocations)

    # -- accessors ----------------------------------------------------------------------------

    @property
    def entities(self) -> tuple[DevEntity, ...]:
        return tuple(self._entities.values())

    def entity(self, label: str) -> DevEntity:
        """Raises ``KeyError`` for an unknown label."""
        return self._entities[label]

    @property
    def root(self) -> DevEntity:
        return self._entities[ROOT_LABEL]

    @property
    def issuing_ca(self) -> DevEntity:
        return self._entities[ISSUING_LABEL]

    @property
    def tsa(self) -> DevEntity:
        return self._entities["tsa"]

    @property
    def ocsp(self) -> DevEntity:
        return self._entities["ocsp"]

    @property
    def qr(self) -> DevEntity:
        return self._entities["qr"]

    @property
    def trust_list(self) -> DevEntity:
        return self._entities["trust_list"]

    @property
    def revoked_seal(self) -> DevEntity:
        return self._entities["revoked_seal"]

    @property
    def expired_seal(self) -> DevEntity:
        return self._entities["expired_seal"]

    @property
    def seals(self) -> tuple[DevEntity, ...]:
        """The departments' current seal certificates (not the revoked/expired test entities)."""
        return tuple(e for e in self._entities.values() if e.label.startswith("seal-"))

    def seal(self, uscc: str) -> DevEntity:
        """The current seal certificate of a department. Raises ``UnknownIssuer``."""
        try:
            return self._entities[seal_label(uscc)]
        except KeyError:
            raise UnknownIssuer(f"no dev seal certificate for issuer {uscc}",
                                field="issuer") from None

    @property
    def ca_certificates(self) -> dict[str, x509.Certificate]:
        """CA certificates by URL name (``root``, ``issuing``), as in ``/pki/ca/<name>.crt``."""
        return {ROOT_LABEL: self.root.certificate, ISSUING_LABEL: self.issuing_ca.certificate}

    def chain_pem(self) -> bytes:
        """Root and issuing CA certificates, PEM (a CAfile for openssl)."""
        return self.root.certificate_pem + self.issuing_ca.certificate_pem

    # -- build / load -------------------------------------------------------------------------

    @classmethod
    def build(cls, path: Path, *, now: datetime, base_url: str,
              departments: Sequence[DepartmentSpec]) -> DevPKI:
        """Create a new dev PKI in ``path`` (created if missing; existing files are overwritten).

        Raises:
            ConfigurationError: no departments, a malformed department spec or an empty
                ``base_url``. (A naive ``now`` is taken as UTC.)
        """
        if not departments:
            raise ConfigurationError("the dev PKI needs at least one department")
        for dept in departments:
            if len(dept.code) != 18 or not dept.name:
                raise ConfigurationError(f"bad department spec {dept!r}: code must be an 18-char "
                                         "USCC and name non-empty")
        if not base_url:
            raise ConfigurationError("base_url is required")
        now = utc(now).replace(microsecond=0)
        base_url = base_url.rstrip("/")
        b = _Builder(base_url)

        ca_start = now - _CA_BACKDATE
        leaf_start = now - _LEAF_BACKDATE
        root = b.root(ca_start, ca_start + 20 * _YEAR)
        issuing = b.issue(root, ISSUING_LABEL, CertificateRole.ISSUING_CA,
                          _ca_name(ISSUING_CA_NAME), ca_start, ca_start + 10 * _YEAR, ca=True)
        entities = [root, issuing]
        for dept in departments:
            entities.append(b.seal(issuing, seal_label(dept.code), dept, leaf_start,
                                   leaf_start + 3 * _YEAR))
        first = departments[0]
        revoked = b.seal(issuing, "revoked_seal", first, now - timedelta(days=30),
                         now - timedelta(days=30) + 3 * _YEAR)
        expired = b.seal(issuing, "expired_seal", first, now - 2 * _YEAR,
                         now - timedelta(days=30))
        entities += [revoked, expired]
        platform = [
            ("tsa", CertificateRole.TSA, "elicense Dev TSA", 5),
            ("ocsp", CertificateRole.OCSP, "elicense Dev OCSP Responder", 2),
            ("qr", CertificateRole.QR_SIGNING, "elicense Dev QR Signing", 2),
            ("trust_list", CertificateRole.TRUST_LIST, "elicense Dev Trust List", 2),
        ]
        for label, role, cn, years in platform:
            entities.append(b.issue(issuing, label, role, _platform_name(cn), leaf_start,
                                    leaf_start + years * _YEAR))
        revocations = [DevRevocation(label=revoked.label, serial=revoked.serial,
                                     issuer_label=ISSUING_LABEL,
                                     issuer=issuing.certificate.subject,
                                     revoked_at=now - timedelta(days=1),
                                     reason=x509.ReasonFlags.key_compromise.name)]
        pki = cls(path, entities, revocations, base_url=base_url)
        pki._write(now)
        return pki

    @classmethod
    def load(cls, path: Path) -> DevPKI:
        """Open a dev PKI written by :meth:`build`.

        Raises:
            ConfigurationError: the directory holds no (or an unreadable) dev PKI.
        """
        path = Path(path)
        try:
            manifest = json.loads((path / _MANIFEST).read_text(encoding="utf-8"))
            if manifest.get("format") != _FORMAT_VERSION:
                raise ConfigurationError(f"unsupported dev PKI format in {path}")
            entities = []
            for item in manifest["entities"]:
                label = item["label"]
                cert = x509.load_pem_x509_certificate((path / f"{label}.crt.pem").read_bytes())
                key = serialization.load_pem_private_key((path / f"{label}.key.pem").read_bytes(),
                                                         password=None)
                if not isinstance(key, ec.EllipticCurvePrivateKey):
                    raise ConfigurationError(f"dev PKI key {label} is not an EC key")
                entities.append(DevEntity(label=label, role=CertificateRole(item["role"]),
                                          certificate=cert, private_key=key,
                                          issuer_label=item["issuer_label"],
                                          issuer_code=item.get("issuer_code")))
            by_label = {e.label: e for e in entities}
            revocations = []
            for item in json.loads((path / _REVOCATIONS).read_text(encoding="utf-8")):
                issuer = by_label[item["issuer_label"]].certificate.subject
                revocations.append(DevRevocation(
                    label=item["label"], serial=int(item["serial"]),
                    issuer_label=item["issuer_label"], issuer=issuer,
                    revoked_at=datetime.fromisoformat(item["revoked_at"]),
                    reason=item["reason"]))
        except ConfigurationError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"no usable dev PKI in {path}: {exc}") from exc
        return cls(path, entities, revocations, base_url=manifest["base_url"])

    def _write(self, now: datetime) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for e in self.entities:
            (self.path / f"{e.label}.crt.pem").write_bytes(e.certificate_pem)
            _write_private(self.path / f"{e.label}.key.pem", e.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        manifest: dict[str, Any] = {
            "format": _FORMAT_VERSION,
            "built_at": now.isoformat(),
            "base_url": self.base_url,
            "entities": [{"label": e.label, "role": e.role.value, "issuer_label": e.issuer_label,
                          "issuer_code": e.issuer_code, "serial": str(e.serial),
                          "subject": e.certificate.subject.rfc4514_string(),
                          "not_after": e.certificate.not_valid_after_utc.isoformat()}
                         for e in self.entities],
        }
        (self.path / _MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2),
                                           encoding="utf-8")
        revs = [{"label": r.label, "serial": str(r.serial), "issuer_label": r.issuer_label,
                 "revoked_at": r.revoked_at.isoformat(), "reason": r.reason}
                for r in self.initial_revocations]
        (self.path / _REVOCATIONS).write_text(json.dumps(revs, indent=2), encoding="utf-8")


def _write_private(path: Path, data: bytes) -> None:
    # Create with 0600 from the start: the key is never world-readable, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _ca_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_platform_name = _ca_name


def _seal_name(dept: DepartmentSpec) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, dept.name),
                      x509.NameAttribute(_ORG_ID, organization_identifier(dept.code)),
                      x509.NameAttribute(NameOID.COMMON_NAME, dept.name)])


class _Builder:
    """Certificate construction for the dev PKI (the CA mechanism proper is ``signing.ca``)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def root(self, not_before: datetime, not_after: datetime) -> DevEntity:
        key = ec.generate_private_key(ec.SECP256R1())
        name = _ca_name(ROOT_CA_NAME)
        builder = (x509.CertificateBuilder()
                   .subject_name(name).issuer_name(name)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(_ca_key_usage(), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False)
                   .add_extension(_policies(CertificateRole.ROOT_CA), critical=False))
        cert = builder.sign(key, hashes.SHA256())
        return DevEntity(ROOT_LABEL, CertificateRole.ROOT_CA, cert, key, ROOT_LABEL)

    def seal(self, issuer: DevEntity, label: str, dept: DepartmentSpec, not_before: datetime,
             not_after: datetime) -> DevEntity:
        return self.issue(issuer, label, CertificateRole.DEPARTMENT_SEAL, _seal_name(dept),
                          not_before, not_after, issuer_code=dept.code)

    def issue(self, issuer: DevEntity, label: str, role: CertificateRole, subject: x509.Name,
              not_before: datetime, not_after: datetime, *, ca: bool = False,
              issuer_code: str | None = None) -> DevEntity:
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(issuer.certificate.subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                                  critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       issuer.private_key.public_key()), critical=False)
                   .add_extension(_policies(role), critical=False))
        builder = self._urls(builder, issuer.label)
        if ca:
            builder = builder.add_extension(_ca_key_usage(), critical=True)
        else:
            builder = _leaf_extensions(builder, role)
        cert = builder.sign(issuer.private_key, hashes.SHA256())
        return DevEntity(label, role, cert, key, issuer.label, issuer_code)

    def _urls(self, builder: x509.CertificateBuilder, issuer_label: str) -> x509.CertificateBuilder:
        aia = x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(f"{self.base_url}/pki/ocsp")),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(
                                       f"{self.base_url}/pki/ca/{issuer_label}.crt")),
        ])
        crldp = x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(
                f"{self.base_url}/pki/crl/{issuer_label}.crl")],
            relative_name=None, reasons=None, crl_issuer=None)])
        return (builder.add_extension(aia, critical=False)
                .add_extension(crldp, critical=False))


def _policies(role: CertificateRole) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(
        x509.ObjectIdentifier(POLICY_OIDS[role]), None)])


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                         crl_sign=True, encipher_only=False, decipher_only=False)


def _key_usage(*, non_repudiation: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=non_repudiation,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=False, crl_sign=False, encipher_only=False,
                         decipher_only=False)


def _leaf_extensions(builder: x509.CertificateBuilder,
                     role: CertificateRole) -> x509.CertificateBuilder:
    if role is CertificateRole.DEPARTMENT_SEAL:
        return builder.add_extension(_key_usage(non_repudiation=True), critical=True)
    if role is CertificateRole.TSA:
        # RFC 3161 §2.3: the TSA certificate has exactly one EKU, timeStamping, marked critical.
        return (builder.add_extension(_key_usage(non_repudiation=True), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                               critical=True))
    if role is CertificateRole.OCSP:
        return (builder.add_extension(_key_usage(non_repudiation=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                               critical=False)
                .add_extension(x509.OCSPNoCheck(), critical=False))
    # QR signing and trust-list keys sign tokens (COSE, JWS), not certificates.
    return builder.add_extension(_key_usage(non_repudiation=False), critical=True)
