"""The OCSP responder against the real openssl client, plus hostile and edge-case requests."""

from __future__ import annotations

import base64
import http.server
import threading
import urllib.request
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from keys_dev import DevPKI
from license_core.errors import ConfigurationError, ValidationFailed
from signing.ca import CertificateAuthority, InMemoryCertificateStore
from signing.ocsp import (
    CertStatus,
    CertStatusInfo,
    OcspResponder,
    decode_get_path,
    store_status_lookup,
)

from .conftest import NOW


@pytest.fixture
def responder(signing_pki: DevPKI, cert_store: InMemoryCertificateStore,
              pki_clock) -> OcspResponder:
    return OcspResponder(signing_pki.ocsp.certificate, signing_pki.ocsp.private_key,
                         issuers=[signing_pki.issuing_ca.certificate],
                         status_lookup=store_status_lookup(cert_store), clock=pki_clock)


def _pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _request(cert: x509.Certificate, issuer: x509.Certificate, algo=hashes.SHA256(),
             nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algo)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.fixture
def files(signing_pki: DevPKI, tmp_path: Path, chain_file: Path) -> dict[str, Path]:
    return {"issuer": _pem(tmp_path / "issuing.pem", signing_pki.issuing_ca.certificate),
            "seal": _pem(tmp_path / "seal.pem", signing_pki.seals[0].certificate),
            "revoked": _pem(tmp_path / "revoked.pem", signing_pki.revoked_seal.certificate),
            "chain": chain_file}


def _openssl_check(run_openssl, files, cert_file: Path, req: Path, resp: Path,
                   digest: str = "-sha1") -> str:
    """Two openssl runs: against the request (checks the nonce echo and the signature), and
    against the certificate (prints ``<file>: good|revoked``). openssl cannot do both at once:
    ``-cert`` makes it build a fresh request with a fresh nonce."""
    at = str(int((NOW + timedelta(minutes=1)).timestamp()))
    # -attime pins chain validation to the test clock; the thisUpdate/nextUpdate check always
    # uses the real time, so widen its tolerance instead.
    lenient = ["-validity_period", str(20 * 365 * 86400)]
    by_request = run_openssl("ocsp", "-reqin", str(req), "-respin", str(resp), "-CAfile",
                             str(files["chain"]), "-resp_text", "-attime", at, *lenient)
    by_cert = run_openssl("ocsp", "-respin", str(resp), "-issuer", str(files["issuer"]), digest,
                          "-cert", str(cert_file), "-no_nonce", "-CAfile", str(files["chain"]),
                          "-attime", at, *lenient)
    return by_request.stdout + by_request.stderr + by_cert.stdout + by_cert.stderr


@pytest.mark.parametrize("digest", ["-sha1", "-sha256"])
@pytest.mark.parametrize("nonce", [True, False])
def test_openssl_good_then_revoked(run_openssl, files, tmp_path, responder, dev_ca, pki_clock,
                                   signing_pki,
                                   digest, nonce):
    req, resp = tmp_path / "req.der", tmp_path / "resp.der"
    # (openssl wants the CertID digest before -cert)
    run_openssl("ocsp", "-issuer", str(files["issuer"]), digest, "-cert", str(files["seal"]),
                *([] if nonce else ["-no_nonce"]), "-reqout", str(req))
    resp.write_bytes(responder.respond(req.read_bytes()))
    text = _openssl_check(run_openssl, files, files["seal"], req, resp, digest)
    assert "Response verify OK" in text
    assert f"{files['seal']}: good" in text
    if nonce:
        assert "WARNING: no nonce in response" not in text
        assert "OCSP Nonce" in text

    pki_clock.advance(timedelta(seconds=5))
    dev_ca.revoke(signing_pki.seals[0].serial, "key_compromise")
    resp.write_bytes(responder.respond(req.read_bytes()))
    text = _openssl_check(run_openssl, files, files["seal"], req, resp, digest)
    assert "Response verify OK" in text
    assert f"{files['seal']}: revoked" in text
    assert "Reason: keyCompromise" in text


def test_openssl_initially_revoked_seal(run_openssl, files, tmp_path, responder):
    req, resp = tmp_path / "req.der", tmp_path / "resp.der"
    run_openssl("ocsp", "-issuer", str(files["issuer"]), "-cert", str(files["revoked"]),
                "-reqout", str(req))
    resp.write_bytes(responder.respond(req.read_bytes()))
    text = _openssl_check(run_openssl, files, files["revoked"], req, resp)
    assert f"{files['revoked']}: revoked" in text


def test_openssl_over_http_get_and_post(run_openssl, files, tmp_path, responder):
    """openssl talks HTTP to a tiny local server (POST); GET with a base64 path via urllib."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            self._reply(responder.respond(self.rfile.read(length)))

        def do_GET(self):  # noqa: N802
            path = self.path.removeprefix("/pki/ocsp/")
            self._reply(responder.respond_get(path))

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/pki/ocsp"
        at = str(int((NOW + timedelta(minutes=1)).timestamp()))
        common = ["-issuer", str(files["issuer"]), "-cert", str(files["seal"]), "-CAfile",
                  str(files["chain"]), "-attime", at, "-url", url,
                  "-validity_period", str(20 * 365 * 86400)]
        post = run_openssl("ocsp", *common)
        assert f"{files['seal']}: good" in post.stdout
        # openssl 3.0 cannot send GET: send its request the way NSS does (base64, %2F-escaped).
        req = tmp_path / "req.der"
        run_openssl("ocsp", "-issuer", str(files["issuer"]), "-cert", str(files["seal"]),
                    "-reqout", str(req))
        path = quote(base64.b64encode(req.read_bytes()).decode(), safe="")
        with urllib.request.urlopen(f"{url}/{path}", timeout=10) as fh:
            resp = ocsp.load_der_ocsp_response(fh.read())
        assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    finally:
        server.shutdown()
        server.server_close()


def test_response_fields(responder, signing_pki, pki_clock):
    nonce = b"\x01" * 16
    resp = ocsp.load_der_ocsp_response(responder.respond(
        _request(signing_pki.seals[0].certificate, signing_pki.issuing_ca.certificate,
                 nonce=nonce)))
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert resp.serial_number == signing_pki.seals[0].serial
    assert resp.this_update_utc == NOW
    assert resp.next_update_utc == NOW + timedelta(hours=4)
    assert resp.certificates == [signing_pki.ocsp.certificate]  # delegated responder included
    assert resp.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        signing_pki.ocsp.certificate.public_key()).digest
    assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    signing_pki.ocsp.certificate.public_key().verify(resp.signature, resp.tbs_response_bytes,
                                             ec.ECDSA(hashes.SHA256()))


def test_revoked_reason_and_time(responder, signing_pki):
    resp = ocsp.load_der_ocsp_response(responder.respond(
        _request(signing_pki.revoked_seal.certificate, signing_pki.issuing_ca.certificate,
                 hashes.SHA1())))
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    rev = signing_pki.initial_revocations[0]
    assert resp.revocation_time_utc == rev.revoked_at
    assert resp.revocation_reason is x509.ReasonFlags.key_compromise


def test_unknown_serial(responder, signing_pki):
    # A certificate with our issuing CA's name and key hash but never recorded in the store.
    stray = ca_stray_certificate(signing_pki)
    resp = ocsp.load_der_ocsp_response(responder.respond(
        _request(stray, signing_pki.issuing_ca.certificate)))
    assert resp.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def ca_stray_certificate(signing_pki: DevPKI) -> x509.Certificate:
    other_store = InMemoryCertificateStore()
    from license_core.clock import FixedClock
    stray_ca = CertificateAuthority(signing_pki.issuing_ca.certificate,
                                    signing_pki.issuing_ca.private_key,
                                    store=other_store, clock=FixedClock(NOW),
                                    base_url="http://x")
    key = ec.generate_private_key(ec.SECP256R1())
    return stray_ca.issue_department_seal(key.public_key(), uscc="91110000600037341L",
                                          name="冒名部门")


def test_future_revocation_is_not_yet_in_force(signing_pki, pki_clock):
    lookup = lambda issuer, serial: CertStatusInfo.revoked(NOW + timedelta(days=1),  # noqa: E731
                                                           "superseded")
    responder = OcspResponder(signing_pki.ocsp.certificate, signing_pki.ocsp.private_key,
                              issuers=[signing_pki.issuing_ca.certificate], status_lookup=lookup,
                              clock=pki_clock)
    resp = ocsp.load_der_ocsp_response(responder.respond(
        _request(signing_pki.seals[0].certificate, signing_pki.issuing_ca.certificate)))
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_issuer_not_served_is_unauthorized(responder, signing_pki):
    # The issuing CA's own status is the root's business, not this delegated responder's.
    resp = ocsp.load_der_ocsp_response(responder.respond(
        _request(signing_pki.issuing_ca.certificate, signing_pki.root.certificate)))
    assert resp.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


@pytest.mark.parametrize("body", [b"", b"garbage", b"\x30\x03\x02\x01", b"\x30" * 5000,
                                  bytes(range(256))],
                         ids=["empty", "text", "truncated", "nested", "bytes"])
def test_malformed_requests_get_malformed_response(responder, body):
    resp = ocsp.load_der_ocsp_response(responder.respond(body))
    assert resp.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_truncated_request_and_oversized_nonce(responder, signing_pki):
    good = _request(signing_pki.seals[0].certificate, signing_pki.issuing_ca.certificate)
    for body in (good[:-3], good[: len(good) // 2]):
        status = ocsp.load_der_ocsp_response(responder.respond(body)).response_status
        assert status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    big_nonce = _request(signing_pki.seals[0].certificate, signing_pki.issuing_ca.certificate,
                         nonce=b"n" * 64)
    status = ocsp.load_der_ocsp_response(responder.respond(big_nonce)).response_status
    assert status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_decode_get_path_variants(signing_pki):
    der = _request(signing_pki.seals[0].certificate, signing_pki.issuing_ca.certificate)
    std = base64.b64encode(der).decode()
    urlsafe = base64.urlsafe_b64encode(der).decode()
    variants = [std, quote(std, safe=""), quote(std, safe="/"), std.rstrip("="),
                urlsafe, urlsafe.rstrip("="), std.replace("/", "%2F")]
    for v in variants:
        assert decode_get_path(v) == der, v
    for bad in ["", "!!!", "%ZZ", "a"]:
        with pytest.raises(ValidationFailed):
            decode_get_path(bad)


def test_respond_get(responder, signing_pki):
    der = _request(signing_pki.seals[0].certificate, signing_pki.issuing_ca.certificate)
    path = quote(base64.b64encode(der).decode(), safe="")
    resp = ocsp.load_der_ocsp_response(responder.respond_get(path))
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    bad = ocsp.load_der_ocsp_response(responder.respond_get("!!!"))
    assert bad.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ca_can_sign_its_own_responses(signing_pki, cert_store, pki_clock):
    responder = OcspResponder(signing_pki.issuing_ca.certificate,
                              signing_pki.issuing_ca.private_key,
                              issuers=[signing_pki.issuing_ca.certificate],
                              status_lookup=store_status_lookup(cert_store), clock=pki_clock)
    resp = ocsp.load_der_ocsp_response(responder.respond(
        _request(signing_pki.seals[0].certificate, signing_pki.issuing_ca.certificate)))
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert resp.certificates == []


def test_misconfigured_responders(signing_pki, cert_store, pki_clock):
    lookup = store_status_lookup(cert_store)
    with pytest.raises(ConfigurationError):  # not issued by the root
        OcspResponder(signing_pki.ocsp.certificate, signing_pki.ocsp.private_key,
                      issuers=[signing_pki.root.certificate], status_lookup=lookup, clock=pki_clock)
    with pytest.raises(ConfigurationError):  # key mismatch
        OcspResponder(signing_pki.ocsp.certificate, signing_pki.tsa.private_key,
                      issuers=[signing_pki.issuing_ca.certificate], status_lookup=lookup,
                      clock=pki_clock)
    with pytest.raises(ConfigurationError):  # no OCSPSigning EKU
        OcspResponder(signing_pki.tsa.certificate, signing_pki.tsa.private_key,
                      issuers=[signing_pki.issuing_ca.certificate], status_lookup=lookup,
                      clock=pki_clock)


def test_store_status_lookup(cert_store, signing_pki):
    lookup = store_status_lookup(cert_store)
    issuing = signing_pki.issuing_ca.certificate
    assert lookup(issuing, signing_pki.seals[0].serial).status is CertStatus.GOOD
    assert lookup(issuing, signing_pki.revoked_seal.serial).status is CertStatus.REVOKED
    assert lookup(issuing, 12345).status is CertStatus.UNKNOWN
