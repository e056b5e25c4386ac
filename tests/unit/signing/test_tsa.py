"""The RFC 3161 TSA against the real openssl client and pyHanko, plus bad requests."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from asn1crypto import algos, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext

from keys_dev import DevPKI
from license_core.errors import ConfigurationError
from license_core.oids import POLICY_OIDS, CertificateRole
from signing.tsa import InProcessTimeStamper, TimeStampAuthority, TimeStampResp

from .conftest import NOW

POLICY = POLICY_OIDS[CertificateRole.TSA]


@pytest.fixture
def tsa(signing_pki: DevPKI, pki_clock) -> TimeStampAuthority:
    serials = itertools.count(1000)
    return TimeStampAuthority(signing_pki.tsa.certificate, signing_pki.tsa.private_key,
                              clock=pki_clock,
                              policy_oid=POLICY, serial_source=lambda: next(serials))


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(b"an e-license, more or less\n" * 10)
    return path


@pytest.fixture
def tsa_pem(signing_pki: DevPKI, tmp_path: Path) -> Path:
    path = tmp_path / "tsa.pem"
    path.write_bytes(signing_pki.tsa.certificate_pem)
    return path


def _at() -> str:
    return str(int((NOW + timedelta(minutes=1)).timestamp()))


def _status(resp_der: bytes) -> tuple[str, set]:
    status = TimeStampResp.load(resp_der)["status"]
    return status["status"].native, status["fail_info"].native or set()


@pytest.mark.parametrize("cert_req", [True, False])
def test_openssl_query_reply_verify(run_openssl, tmp_path, tsa, data_file, chain_file, tsa_pem,
                                    cert_req):
    req, resp = tmp_path / "req.tsq", tmp_path / "resp.tsr"
    run_openssl("ts", "-query", "-data", str(data_file), "-sha256",
                *(["-cert"] if cert_req else []), "-out", str(req))
    resp.write_bytes(tsa.respond(req.read_bytes()))

    text = run_openssl("ts", "-reply", "-in", str(resp), "-text").stdout
    assert "Status: Granted." in text
    assert f"Policy OID: {POLICY}" in text
    assert "Nonce: 0x" in text
    assert "Serial number: 0x03E8" in text
    assert "Time stamp: Mar  1 08:00:00 2026 GMT" in text
    assert "TSA: DirName:/C=CN/O=elicense Dev/CN=elicense Dev TSA" in text

    extra = [] if cert_req else ["-untrusted", str(tsa_pem)]
    out = run_openssl("ts", "-verify", "-in", str(resp), "-queryfile", str(req), "-CAfile",
                      str(chain_file), "-attime", _at(), *extra)
    assert "Verification: OK" in out.stdout
    out = run_openssl("ts", "-verify", "-in", str(resp), "-data", str(data_file), "-CAfile",
                      str(chain_file), "-attime", _at(), *extra)
    assert "Verification: OK" in out.stdout


def test_openssl_detects_other_data(run_openssl, tmp_path, tsa, data_file, chain_file):
    req, resp = tmp_path / "req.tsq", tmp_path / "resp.tsr"
    run_openssl("ts", "-query", "-data", str(data_file), "-sha256", "-cert", "-out", str(req))
    resp.write_bytes(tsa.respond(req.read_bytes()))
    other = tmp_path / "other.bin"
    other.write_bytes(b"something else")
    out = run_openssl("ts", "-verify", "-in", str(resp), "-data", str(other), "-CAfile",
                      str(chain_file), "-attime", _at(), check=False)
    assert "Verification: OK" not in out.stdout


def test_token_contents(tsa, signing_pki):
    digest = hashlib.sha256(b"x").digest()
    req = tsp.TimeStampReq({"version": 1, "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
        "nonce": 424242, "cert_req": True})
    resp = tsp.TimeStampResp.load(tsa.respond(req.dump()))
    assert resp["status"]["status"].native == "granted"
    signed = resp["time_stamp_token"]["content"]
    tst = signed["encap_content_info"]["content"].parsed
    assert tst["gen_time"].native == NOW
    assert tst["nonce"].native == 424242
    assert tst["message_imprint"]["hashed_message"].native == digest
    assert tst["policy"].native == POLICY
    certs = [c.chosen.dump() for c in signed["certificates"]]
    assert certs == [signing_pki.tsa.certificate_der]
    attrs = {a["type"].native: a["values"][0] for a in signed["signer_infos"][0]["signed_attrs"]}
    ess = attrs["signing_certificate_v2"]["certs"][0]
    assert ess["cert_hash"].native == hashlib.sha256(signing_pki.tsa.certificate_der).digest()
    assert ess["issuer_serial"]["serial_number"].native == signing_pki.tsa.serial
    assert attrs["message_digest"].native == hashlib.sha256(
        signed["encap_content_info"]["content"].contents).digest()


def test_pyhanko_in_process_timestamper_validates(tsa, signing_pki):
    stamper = InProcessTimeStamper(tsa)
    digest = hashlib.sha256(b"document bytes").digest()
    token = asyncio.run(stamper.async_timestamp(digest, "sha256"))  # checks the nonce echo
    vc = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(signing_pki.root.certificate_der)],
        other_certs=[asn1_x509.Certificate.load(signing_pki.issuing_ca.certificate_der)],
        allow_fetching=False, revocation_mode="soft-fail", moment=NOW + timedelta(minutes=1))
    result = asyncio.run(validate_tst_signed_data(token["content"], vc, lambda _alg: digest))
    assert result["intact"] and result["valid"]
    assert result["timestamp"] == NOW
    assert result["signing_cert"].dump() == signing_pki.tsa.certificate_der


def test_sha1_is_refused_with_bad_alg(run_openssl, tmp_path, tsa, data_file):
    req = tmp_path / "req.tsq"
    run_openssl("ts", "-query", "-data", str(data_file), "-sha1", "-out", str(req))
    resp = tsa.respond(req.read_bytes())
    assert _status(resp) == ("rejection", {"bad_alg"})
    (tmp_path / "resp.tsr").write_bytes(resp)
    text = run_openssl("ts", "-reply", "-in", str(tmp_path / "resp.tsr"), "-text").stdout
    assert "Status: Rejected." in text


def test_foreign_policy_is_refused(run_openssl, tmp_path, tsa, data_file):
    req = tmp_path / "req.tsq"
    run_openssl("ts", "-query", "-data", str(data_file), "-sha256", "-tspolicy", "1.2.3.4",
                "-out", str(req))
    assert _status(tsa.respond(req.read_bytes())) == ("rejection", {"unaccepted_policy"})


def test_own_policy_is_accepted(run_openssl, tmp_path, tsa, data_file):
    req = tmp_path / "req.tsq"
    run_openssl("ts", "-query", "-data", str(data_file), "-sha256", "-tspolicy", POLICY,
                "-out", str(req))
    assert _status(tsa.respond(req.read_bytes()))[0] == "granted"


def test_wrong_digest_length_and_unknown_algorithm(tsa):
    short = tsp.TimeStampReq({"version": 1, "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"\x00" * 20}})
    assert _status(tsa.respond(short.dump())) == ("rejection", {"bad_data_format"})
    md5 = tsp.TimeStampReq({"version": 1, "message_imprint": {
        "hash_algorithm": algos.DigestAlgorithm({"algorithm": "md5"}),
        "hashed_message": b"\x00" * 16}})
    assert _status(tsa.respond(md5.dump())) == ("rejection", {"bad_alg"})


def test_critical_extension_is_refused(tsa):
    req = tsp.TimeStampReq({"version": 1, "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"\x00" * 32},
        "extensions": [{"extn_id": "1.2.3.4.5", "critical": True, "extn_value": b"\x05\x00"}]})
    assert _status(tsa.respond(req.dump())) == ("rejection", {"unaccepted_extensions"})


@pytest.mark.parametrize("body", [b"", b"garbage", b"\x30\x80", b"\x30" * 3000,
                                  bytes(range(256)), b"\x30\x03\x02\x01\x07"],
                         ids=["empty", "text", "indefinite", "nested", "bytes", "version7"])
def test_malformed_requests_get_bad_data_format(tsa, body):
    status, fail = _status(tsa.respond(body))
    assert status == "rejection"
    assert fail in ({"bad_data_format"}, {"bad_request"})


def test_truncated_and_trailing_garbage(tsa):
    good = tsp.TimeStampReq({"version": 1, "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"\x00" * 32}}).dump()
    assert _status(tsa.respond(good[:-1])) == ("rejection", {"bad_data_format"})
    assert _status(tsa.respond(good + b"\x00")) == ("rejection", {"bad_data_format"})


def test_serials_come_from_the_source(tsa):
    req = tsp.TimeStampReq({"version": 1, "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"\x01" * 32}}).dump()
    serials = [tsp.TimeStampResp.load(tsa.respond(req))["time_stamp_token"]["content"]
               ["encap_content_info"]["content"].parsed["serial_number"].native
               for _ in range(3)]
    assert serials == [1000, 1001, 1002]


def test_constructor_refuses_non_tsa_certificates(signing_pki, pki_clock):
    with pytest.raises(ConfigurationError):
        TimeStampAuthority(signing_pki.seals[0].certificate, signing_pki.seals[0].private_key,
                           clock=pki_clock,
                           policy_oid=POLICY, serial_source=lambda: 1)
    with pytest.raises(ConfigurationError):
        TimeStampAuthority(signing_pki.tsa.certificate, signing_pki.ocsp.private_key,
                           clock=pki_clock,
                           policy_oid=POLICY, serial_source=lambda: 1)


def test_tsa_certificate_profile(signing_pki):
    eku = signing_pki.tsa.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]
    assert signing_pki.tsa.certificate.public_bytes(serialization.Encoding.DER) == \
        signing_pki.tsa.certificate_der


def test_pyhanko_signs_a_pdf_with_the_in_process_tsa(signing_pki, pki_clock):
    """B-T seal with an EC seal key and the EC TSA; the token carries the issuing CA too."""
    import io

    from asn1crypto import keys as asn1_keys
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.pdf_utils.writer import PdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    tsa = TimeStampAuthority(signing_pki.tsa.certificate, signing_pki.tsa.private_key,
                             clock=pki_clock,
                             policy_oid=POLICY, serial_source=lambda: 7,
                             extra_certificates=[signing_pki.issuing_ca.certificate])
    writer = PdfFileWriter()
    writer.insert_page(generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): generic.ArrayObject(
            [generic.NumberObject(v) for v in (0, 0, 595, 842)])}))
    buf = io.BytesIO()
    writer.write(buf)
    buf.seek(0)

    def a(entity):
        return asn1_x509.Certificate.load(entity.certificate_der)

    seal = signing_pki.seals[0]
    signer = signers.SimpleSigner(
        signing_cert=a(seal),
        signing_key=asn1_keys.PrivateKeyInfo.load(seal.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())),
        cert_registry=SimpleCertificateStore.from_certs([a(signing_pki.issuing_ca)]))
    out = signers.sign_pdf(IncrementalPdfFileWriter(buf),
                           signers.PdfSignatureMetadata(field_name="Seal", md_algorithm="sha256"),
                           signer=signer, timestamper=InProcessTimeStamper(tsa))
    vc = ValidationContext(trust_roots=[a(signing_pki.root)], allow_fetching=False,
                           revocation_mode="soft-fail", moment=NOW + timedelta(minutes=1))
    status = validate_pdf_signature(PdfFileReader(out).embedded_signatures[0], vc)
    assert status.intact and status.valid and status.trusted
    ts = status.timestamp_validity
    assert ts is not None and ts.intact and ts.valid and ts.trusted
    assert ts.timestamp == NOW
