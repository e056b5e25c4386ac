"""Detached CMS (PKCS#7 SignedData) verification facts.

:func:`verify_detached_cms` parses the signature with asn1crypto, checks the ``messageDigest``
signed attribute against the content (``intact``), the signature over the signed attributes with
the signer certificate's key (``signature_valid``), and the signer certificate with
:func:`signing.certificate_report.certificate_report` against the trust roots passed in. It never
raises on hostile input: a signature that cannot be parsed gives a report with ``error`` set.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from license_core.clock import utc

from .certificate_report import CertificateReport, certificate_report
from .ocsp import StatusLookup

__all__ = ["CmsReport", "verify_detached_cms", "MAX_SIGNATURE_BYTES"]

MAX_SIGNATURE_BYTES = 512 * 1024  # a CMS signature with a full chain is a few KiB
_MAX_CERTS = 32

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
    "sha384": hashes.SHA384, "sha512": hashes.SHA512, "sha3_256": hashes.SHA3_256,
    "sha3_384": hashes.SHA3_384, "sha3_512": hashes.SHA3_512,
}
_WEAK = {"md5", "sha1"}


@dataclass(frozen=True)
class CmsReport:
    """What a detached CMS signature says about ``content``.

    ``intact``: the signed digest matches the content; ``signature_valid``: the signer's key
    signed the signed attributes; ``certificate``: facts about the signer certificate (``None``
    when it was not found in the signature). ``error`` explains a signature that could not be
    checked at all.
    """

    error: str | None
    intact: bool
    signature_valid: bool
    parsed: bool  # False: not a detached CMS SignedData at all (garbage, attached, no signer)
    digest_algorithm: str | None
    signature_algorithm: str | None
    weak_algorithm: bool
    signing_time: datetime | None  # the signer's claim (signingTime attribute), not a timestamp
    signer: x509.Certificate | None
    certificate: CertificateReport | None
    signer_count: int

    @property
    def trusted(self) -> bool:
        return self.certificate is not None and self.certificate.trusted

    @property
    def valid(self) -> bool:
        """Intact, cryptographically valid with a strong algorithm, and a valid signer
        certificate (trusted, within validity, not revoked)."""
        return (self.error is None and self.intact and self.signature_valid
                and not self.weak_algorithm and self.certificate is not None
                and self.certificate.valid)


def _failed(error: str, *, signer_count: int = 0) -> CmsReport:
    return CmsReport(error=error, intact=False, signature_valid=False, parsed=False,
                     digest_algorithm=None,
                     signature_algorithm=None, weak_algorithm=False, signing_time=None,
                     signer=None, certificate=None, signer_count=signer_count)


_PEM = re.compile(rb"-----BEGIN (?:PKCS7|CMS|PKCS #7 SIGNED DATA)-----(.*?)-----END [^-]+-----",
                  re.S)


def _unarmor(data: bytes) -> bytes:
    match = _PEM.search(data)
    if match is None:
        return data
    return base64.b64decode(b"".join(match.group(1).split()))


def verify_detached_cms(content: bytes, signature: bytes, *,
                        trust_roots: Sequence[x509.Certificate],
                        intermediates: Iterable[x509.Certificate] = (),
                        at: datetime, status_lookup: StatusLookup | None = None) -> CmsReport:
    """Verify a detached CMS ``signature`` (DER, or PEM ``PKCS7``/``CMS``) over ``content``.

    Only the first SignerInfo is judged (``signer_count`` tells how many there are). Never
    raises for bad input; the report's ``error`` says what was wrong.
    """
    if not signature:
        return _failed("empty signature")
    if len(signature) > MAX_SIGNATURE_BYTES:
        return _failed(f"signature larger than {MAX_SIGNATURE_BYTES} bytes")
    try:
        return _verify(content, _unarmor(signature), trust_roots=trust_roots,
                       intermediates=list(intermediates), at=utc(at),
                       status_lookup=status_lookup)
    except Exception as exc:  # asn1crypto raises ValueError/TypeError/KeyError on garbage
        return _failed(f"not a CMS signature: {type(exc).__name__}: {str(exc)[:160]}")


def _verify(content: bytes, der: bytes, *, trust_roots: Sequence[x509.Certificate],
            intermediates: list[x509.Certificate], at: datetime,
            status_lookup: StatusLookup | None) -> CmsReport:
    info = cms.ContentInfo.load(der, strict=True)
    if info["content_type"].native != "signed_data":
        return _failed(f"CMS content type is {info['content_type'].native}, not signed_data")
    signed = info["content"]
    encap = signed["encap_content_info"]
    if encap["content"].native is not None:
        return _failed("the signature is not detached: it carries its own content")
    signer_infos = signed["signer_infos"]
    if len(signer_infos) == 0:
        return _failed("the signature has no signer")
    certs = _certificates(signed)
    signer_info = signer_infos[0]
    signer = _find_signer(signer_info["sid"], certs)
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    sig_algo = signer_info["signature_algorithm"]
    sig_name = sig_algo["algorithm"].native
    weak = digest_name in _WEAK
    hash_cls = _HASHES.get(digest_name)
    if hash_cls is None:
        return _report(error=f"unsupported digest algorithm {digest_name}", intact=False,
                       signature_valid=False, digest=digest_name, sig=sig_name, weak=True,
                       signing_time=None, signer=signer, certs=certs, trust_roots=trust_roots,
                       intermediates=intermediates, at=at, status_lookup=status_lookup,
                       count=len(signer_infos))
    content_digest = _digest(hash_cls(), content)
    signed_attrs = signer_info["signed_attrs"]
    signing_time = None
    if len(signed_attrs) > 0:
        attrs = {a["type"].native: a["values"] for a in signed_attrs}
        md_values = attrs.get("message_digest")
        if md_values is None or len(md_values) != 1:
            return _report(error="signed attributes lack a single messageDigest", intact=False,
                           signature_valid=False, digest=digest_name, sig=sig_name, weak=weak,
                           signing_time=None, signer=signer, certs=certs,
                           trust_roots=trust_roots, intermediates=intermediates, at=at,
                           status_lookup=status_lookup, count=len(signer_infos))
        intact = hmac.compare_digest(bytes(md_values[0].native), content_digest)
        st = attrs.get("signing_time")
        if st is not None and len(st) == 1:
            value = st[0].native
            signing_time = utc(value) if isinstance(value, datetime) else None
        # The signature covers the DER of the attributes as a SET OF (RFC 5652 §5.4),
        # not the [0] IMPLICIT encoding in which they travel.
        attr_der = signed_attrs.dump()
        signed_bytes = b"\x31" + attr_der[1:]
    else:
        intact = True  # checked by the signature itself, which covers the content directly
        signed_bytes = content
    signature_valid = False
    error = None
    if signer is None:
        error = "the signer certificate is not in the signature"
    else:
        signature_valid, error = _check_signature(signer, sig_algo, hash_cls,
                                                  bytes(signer_info["signature"].native),
                                                  signed_bytes)
        if len(signed_attrs) == 0:
            intact = signature_valid
    return _report(error=error, intact=intact, signature_valid=signature_valid,
                   digest=digest_name, sig=sig_name, weak=weak, signing_time=signing_time,
                   signer=signer, certs=certs, trust_roots=trust_roots,
                   intermediates=intermediates, at=at, status_lookup=status_lookup,
                   count=len(signer_infos))


def _report(*, error: str | None, intact: bool, signature_valid: bool, digest: str | None,
            sig: str | None, weak: bool, signing_time: datetime | None,
            signer: x509.Certificate | None, certs: list[x509.Certificate],
            trust_roots: Sequence[x509.Certificate], intermediates: list[x509.Certificate],
            at: datetime, status_lookup: StatusLookup | None, count: int) -> CmsReport:
    cert_report = None
    if signer is not None:
        cert_report = certificate_report(signer, trust_roots=trust_roots,
                                         intermediates=[*intermediates, *certs], at=at,
                                         status_lookup=status_lookup)
    return CmsReport(error=error, intact=intact, signature_valid=signature_valid, parsed=True,
                     digest_algorithm=digest, signature_algorithm=sig, weak_algorithm=weak,
                     signing_time=signing_time, signer=signer, certificate=cert_report,
                     signer_count=count)


def _certificates(signed: cms.SignedData) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    choices = signed["certificates"]
    if choices.native is None:
        return out
    for choice in list(choices)[:_MAX_CERTS]:
        if choice.name != "certificate":
            continue  # attribute certificates and other formats are not signers
        try:
            out.append(x509.load_der_x509_certificate(choice.chosen.dump()))
        except ValueError:
            continue
    return out


def _find_signer(sid: cms.SignerIdentifier, certs: list[x509.Certificate]
                 ) -> x509.Certificate | None:
    if sid.name == "issuer_and_serial_number":
        issuer_der = sid.chosen["issuer"].dump()
        serial = sid.chosen["serial_number"].native
        for cert in certs:
            if cert.serial_number == serial and cert.issuer.public_bytes() == issuer_der:
                return cert
        # Some encoders re-encode the issuer name (string types): compare names the way
        # X.509 does (asn1crypto normalises case and whitespace).
        for cert in certs:
            if cert.serial_number == serial:
                try:
                    if asn1_x509.Name.load(cert.issuer.public_bytes()) == sid.chosen["issuer"]:
                        return cert
                except (ValueError, TypeError):
                    continue
        return None
    if sid.name == "subject_key_identifier":
        ski = bytes(sid.chosen.native)
        for cert in certs:
            try:
                value = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except (x509.ExtensionNotFound, ValueError):
                continue
            if value.value.digest == ski:
                return cert
    return None


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _check_signature(cert: x509.Certificate, sig_algo, default_hash: type[hashes.HashAlgorithm],
                     signature: bytes, data: bytes) -> tuple[bool, str | None]:
    try:
        key = cert.public_key()
    except Exception as exc:  # unsupported key type
        return False, f"unsupported signer key: {exc}"
    algo = sig_algo.signature_algo  # 'ecdsa', 'rsassa_pkcs1v15', 'rsassa_pss', 'ed25519', ...
    try:
        hash_name = sig_algo.hash_algo
    except ValueError:  # plain 'ecdsa'/'rsassa_pkcs1v15' OIDs: the digest algorithm decides
        hash_name = None
    hash_cls = _HASHES.get(hash_name, default_hash) if hash_name else default_hash
    try:
        if algo == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_cls()))
        elif algo == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hash_cls())
        elif algo == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            params = sig_algo["parameters"]
            pss_hash = _HASHES.get(params["hash_algorithm"]["algorithm"].native)
            mgf_hash = _HASHES.get(
                params["mask_gen_algorithm"]["parameters"]["algorithm"].native)
            if pss_hash is None or mgf_hash is None:
                return False, "unsupported RSASSA-PSS parameters"
            key.verify(signature, data,
                       padding.PSS(mgf=padding.MGF1(mgf_hash()),
                                   salt_length=int(params["salt_length"].native)), pss_hash())
        elif algo == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            return False, f"signature algorithm {algo} does not match the signer's key"
    except InvalidSignature:
        return False, None
    except (ValueError, TypeError) as exc:
        return False, f"signature not checkable: {str(exc)[:160]}"
    return True, None
