"""An RFC 3161 time-stamp authority: TimeStampReq DER in, TimeStampResp DER out.

Tokens are CMS SignedData over a TSTInfo, with the signed attributes content-type,
message-digest, signing-time and signing-certificate-v2 (ESSCertIDv2, RFC 5816). The TSA
certificate is included when the request sets ``certReq``. ``respond`` never raises on bad input:
malformed requests get ``rejection`` / ``badDataFormat``, unsupported hash algorithms
``rejection`` / ``badAlg``, foreign policies ``unacceptedPolicy``, unknown critical extensions
``unacceptedExtension``.

:class:`InProcessTimeStamper` is a pyHanko ``TimeStamper`` that calls a local
:class:`TimeStampAuthority` without HTTP (pyHanko's ``DummyTimeStamper`` signs with RSA only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import timedelta

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.sign.timestamps.api import TimeStamper

from license_core.clock import Clock
from license_core.errors import ConfigurationError

__all__ = ["TimeStampAuthority", "InProcessTimeStamper", "TimeStampResp", "SUPPORTED_DIGESTS",
           "TIMESTAMP_QUERY_CONTENT_TYPE", "TIMESTAMP_REPLY_CONTENT_TYPE"]

TIMESTAMP_QUERY_CONTENT_TYPE = "application/timestamp-query"
TIMESTAMP_REPLY_CONTENT_TYPE = "application/timestamp-reply"

#: Message-imprint hash algorithms accepted, with their digest sizes. SHA-1 is refused (badAlg).
SUPPORTED_DIGESTS: dict[str, int] = {"sha256": 32, "sha384": 48, "sha512": 64,
                                     "sha3_256": 32, "sha3_384": 48, "sha3_512": 64}


class TimeStampAuthority:
    """Signs RFC 3161 time-stamp tokens with one TSA certificate and key.

    ``serial_source`` gives each token's serial number (unique per TSA; e.g. a database
    sequence, or ``secrets.randbits(64)``); ``clock`` gives genTime.
    """

    def __init__(self, certificate: x509.Certificate,
                 private_key: CertificateIssuerPrivateKeyTypes, *, clock: Clock,
                 policy_oid: str, serial_source: Callable[[], int],
                 extra_certificates: Sequence[x509.Certificate] = (),
                 accuracy: timedelta = timedelta(seconds=1)) -> None:
        """Raises ``ConfigurationError``: key and certificate differ, the key type is not EC
        or RSA, or the certificate lacks the critical, sole EKU timeStamping (RFC 3161 §2.3)."""
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if certificate.public_key().public_bytes(*spki) != \
                private_key.public_key().public_bytes(*spki):
            raise ConfigurationError("TSA private key does not match the TSA certificate")
        if not isinstance(private_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ConfigurationError("the TSA key must be EC or RSA")
        try:
            eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            eku = None
        if eku is None or not eku.critical or \
                list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
            raise ConfigurationError("the TSA certificate needs a critical EKU timeStamping "
                                     "and no other purpose")
        self.certificate = certificate
        self._key = private_key
        self.clock = clock
        self.policy_oid = policy_oid
        self._serial_source = serial_source
        self._accuracy = accuracy
        self._asn1_cert = asn1_x509.Certificate.load(
            certificate.public_bytes(serialization.Encoding.DER))
        self._extra = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
                       for c in extra_certificates]
        self._signing_certificate_v2 = tsp.SigningCertificateV2({
            "certs": [tsp.ESSCertIDv2({
                # hashAlgorithm defaults to SHA-256 and is therefore omitted (DER).
                "cert_hash": hashlib.sha256(self._asn1_cert.dump()).digest(),
                "issuer_serial": {
                    "issuer": [asn1_x509.GeneralName(name="directory_name",
                                                     value=self._asn1_cert.issuer)],
                    "serial_number": self._asn1_cert.serial_number,
                },
            })],
        })

    # -- public -------------------------------------------------------------------------------

    def respond(self, request_der: bytes) -> bytes:
        """The DER TimeStampResp to a DER TimeStampReq; never raises on bad input."""
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            request.native  # force a full parse: asn1crypto is lazy
        except Exception:  # asn1crypto raises ValueError, TypeError and more on hostile DER
            return _reject("bad_data_format", "request is not a DER TimeStampReq").dump()
        return self.respond_to(request).dump()

    def respond_to(self, request: tsp.TimeStampReq) -> TimeStampResp:
        """The response to a parsed request (for in-process callers); never raises on bad input."""
        try:
            problem = self._check(request)
            if problem is not None:
                return _reject(*problem)
            return self._grant(request)
        except Exception:  # a request that parsed but is inconsistent deeper down
            return _reject("bad_data_format", "malformed request")

    # -- internals ----------------------------------------------------------------------------

    def _check(self, request: tsp.TimeStampReq) -> tuple[str, str] | None:
        if request["version"].native != "v1":
            return "bad_request", "unsupported request version"
        imprint = request["message_imprint"]
        algo = imprint["hash_algorithm"]["algorithm"].native
        if algo not in SUPPORTED_DIGESTS:
            return "bad_alg", f"unsupported hash algorithm {algo}"
        if len(imprint["hashed_message"].native) != SUPPORTED_DIGESTS[algo]:
            return "bad_data_format", "hashed message has the wrong length for its algorithm"
        policy = request["req_policy"].native
        if policy is not None and policy != self.policy_oid:
            return "unaccepted_policy", f"policy {policy} is not offered"
        extensions = request["extensions"]
        if extensions.native:
            for ext in extensions:
                if ext["critical"].native:
                    return "unaccepted_extensions", "unsupported critical extension"
        return None

    def _grant(self, request: tsp.TimeStampReq) -> TimeStampResp:
        now = self.clock.now()
        seconds = int(self._accuracy.total_seconds())
        millis = int(self._accuracy.microseconds // 1000)
        accuracy: dict[str, int] = {}
        if seconds:
            accuracy["seconds"] = seconds
        if millis:
            accuracy["millis"] = millis
        tst_args = {
            "version": "v1",
            "policy": self.policy_oid,
            "message_imprint": request["message_imprint"],
            "serial_number": int(self._serial_source()),
            "gen_time": now,
            "accuracy": accuracy or {"seconds": 1},
            "tsa": asn1_x509.GeneralName(name="directory_name", value=self._asn1_cert.subject),
        }
        if request["nonce"].native is not None:
            tst_args["nonce"] = request["nonce"].native
        tst_info = tsp.TSTInfo(tst_args).dump()

        signed_attrs = cms.CMSAttributes([
            _attr("content_type", cms.ContentType("tst_info")),
            _attr("signing_time", cms.Time({"utc_time": core.UTCTime(now)})),
            _attr("message_digest", core.OctetString(hashlib.sha256(tst_info).digest())),
            _attr("signing_certificate_v2", self._signing_certificate_v2),
        ])
        signature, sig_algo = self._sign(signed_attrs.dump())
        digest_algo = algos.DigestAlgorithm({"algorithm": "sha256"})
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
                "issuer": self._asn1_cert.issuer,
                "serial_number": self._asn1_cert.serial_number,
            })}),
            "digest_algorithm": digest_algo,
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": sig_algo}),
            "signature": signature,
        })
        signed_data = {
            "version": "v3",
            "digest_algorithms": [digest_algo],
            "encap_content_info": {"content_type": "tst_info",
                                   "content": core.ParsableOctetString(tst_info)},
            "signer_infos": [signer_info],
        }
        if request["cert_req"].native:
            signed_data["certificates"] = [self._asn1_cert, *self._extra]
        token = cms.ContentInfo({"content_type": "signed_data",
                                 "content": cms.SignedData(signed_data)})
        return TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})

    def _sign(self, data: bytes) -> tuple[bytes, str]:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(hashes.SHA256())), "sha256_ecdsa"
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256()), "sha256_rsa"


class TimeStampResp(tsp.TimeStampResp):
    """``asn1crypto.tsp.TimeStampResp`` with timeStampToken OPTIONAL, as in RFC 3161 §2.4.2.

    asn1crypto 1.5 declares the token mandatory, so it cannot even read a rejection; load
    responses from this TSA (or any TSA) with this class.
    """

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _attr(name: str, value: core.Asn1Value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": cms.CMSAttributeType(name), "values": [value]})


def _reject(fail_info: str, text: str) -> TimeStampResp:
    return TimeStampResp({"status": {
        "status": "rejection",
        "status_string": [text],
        "fail_info": tsp.PKIFailureInfo({fail_info}),
    }})


class InProcessTimeStamper(TimeStamper):
    """A pyHanko ``TimeStamper`` backed by a local :class:`TimeStampAuthority` (no HTTP).

    The request goes through DER encoding and decoding, exactly as it would over the wire.
    """

    def __init__(self, tsa: TimeStampAuthority, *, include_nonce: bool = True) -> None:
        super().__init__(include_nonce=include_nonce)
        self.tsa = tsa

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        return TimeStampResp.load(self.tsa.respond(req.dump()))
