"""The PKI endpoints against real clients: ``openssl ts`` and ``openssl ocsp`` over HTTP."""

import base64
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from license_core.errors import SealKeyRevoked
from tests.conftest import require_tool
from verify_api.platform.pki import platform_pki
from verify_api.services.keys import revoke_seal, rotate_seal

SEAL_ISSUER = "11440300MB2C928159"  # 深圳市市场监督管理局 in the demo catalog


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _files(tmp_path: Path, container):  # type: ignore[no-untyped-def]
    pki = platform_pki(container)
    (tmp_path / "root.pem").write_bytes(_pem(pki.root))
    (tmp_path / "issuing.pem").write_bytes(_pem(pki.issuing))
    (tmp_path / "chain.pem").write_bytes(_pem(pki.issuing) + _pem(pki.root))
    seal = pki.seal_for(SEAL_ISSUER).certificate
    (tmp_path / "seal.pem").write_bytes(_pem(seal))
    return pki, seal


def _ocsp_status(tmp_path: Path, url: str, cert_file: str = "seal.pem") -> str:
    out = subprocess.run(
        ["openssl", "ocsp", "-issuer", str(tmp_path / "issuing.pem"),
         "-cert", str(tmp_path / cert_file), "-url", url + "/pki/ocsp",
         "-CAfile", str(tmp_path / "chain.pem")],
        capture_output=True, text=True, timeout=60)
    assert "Response verify OK" in out.stderr + out.stdout, out.stderr + out.stdout
    line = [ln for ln in out.stdout.splitlines() if ln.startswith(str(tmp_path / cert_file))][0]
    return line.split(":", 1)[1].strip()


def test_openssl_timestamp_round_trip(live_service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    require_tool("openssl")
    container, server = live_service
    _files(tmp_path, container)
    data = tmp_path / "data.bin"
    data.write_bytes(b"elicense timestamp test\n" * 10)
    subprocess.run(["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert",
                    "-out", str(tmp_path / "req.tsq")], check=True, capture_output=True)
    request = urllib.request.Request(server.url + "/pki/tsa",
                                     data=(tmp_path / "req.tsq").read_bytes(),
                                     headers={"Content-Type": "application/timestamp-query"})
    reply = urllib.request.urlopen(request, timeout=30).read()
    (tmp_path / "resp.tsr").write_bytes(reply)
    verify = subprocess.run(["openssl", "ts", "-verify", "-in", str(tmp_path / "resp.tsr"),
                             "-queryfile", str(tmp_path / "req.tsq"),
                             "-CAfile", str(tmp_path / "chain.pem")],
                            capture_output=True, text=True)
    assert "Verification: OK" in verify.stdout, verify.stdout + verify.stderr
    # a different document does not verify against that token
    other = tmp_path / "other.bin"
    other.write_bytes(b"something else")
    bad = subprocess.run(["openssl", "ts", "-verify", "-in", str(tmp_path / "resp.tsr"),
                          "-data", str(other), "-CAfile", str(tmp_path / "chain.pem")],
                         capture_output=True, text=True)
    assert "Verification: OK" not in bad.stdout


def test_garbage_tsa_request_gets_a_rejection_not_a_500(live_service) -> None:  # type: ignore[no-untyped-def]
    _container, server = live_service
    request = urllib.request.Request(server.url + "/pki/tsa", data=b"\x30\x03garbage")
    reply = urllib.request.urlopen(request, timeout=30)
    assert reply.status == 200
    from signing.tsa import TimeStampResp  # RFC 3161: the token is absent on rejection
    assert TimeStampResp.load(reply.read())["status"]["status"].native == "rejection"


def test_openssl_ocsp_good_then_revoked_and_new_seal_refused(live_service,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    require_tool("openssl")
    container, server = live_service
    pki, seal = _files(tmp_path, container)
    assert _ocsp_status(tmp_path, server.url) == "good"

    # GET form (RFC 6960 appendix A), as NSS sends it with %2F
    subprocess.run(["openssl", "ocsp", "-issuer", str(tmp_path / "issuing.pem"), "-cert",
                    str(tmp_path / "seal.pem"), "-no_nonce", "-reqout",
                    str(tmp_path / "req.der")], check=True, capture_output=True)
    encoded = urllib.parse.quote(base64.b64encode((tmp_path / "req.der").read_bytes()).decode(),
                                 safe="")
    from cryptography.x509 import ocsp
    got = ocsp.load_der_ocsp_response(
        urllib.request.urlopen(f"{server.url}/pki/ocsp/{encoded}", timeout=30).read())
    assert got.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert got.certificate_status == ocsp.OCSPCertStatus.GOOD

    revoke_seal(container, issuer_code=SEAL_ISSUER, reason="key_compromise", actor="test")
    assert _ocsp_status(tmp_path, server.url) == "revoked"
    crl = x509.load_der_x509_crl(
        urllib.request.urlopen(server.url + "/pki/crl/issuing.crl", timeout=30).read())
    assert crl.get_revoked_certificate_by_serial_number(seal.serial_number) is not None

    with pytest.raises(SealKeyRevoked):
        pki.seal_for(SEAL_ISSUER)
    rotated = rotate_seal(container, issuer_code=SEAL_ISSUER, actor="test")
    fresh = pki.seal_for(SEAL_ISSUER)
    assert format(fresh.certificate.serial_number, "x") == rotated["serial"]
    assert fresh.certificate.serial_number != seal.serial_number
    (tmp_path / "fresh.pem").write_bytes(_pem(fresh.certificate))
    assert _ocsp_status(tmp_path, server.url, "fresh.pem") == "good"


def test_ca_certificates_and_unknown_names(live_service) -> None:  # type: ignore[no-untyped-def]
    container, server = live_service
    root = x509.load_der_x509_certificate(
        urllib.request.urlopen(server.url + "/pki/ca/root.crt", timeout=30).read())
    assert root == platform_pki(container).root
    try:
        urllib.request.urlopen(server.url + "/pki/ca/nope.crt", timeout=30)
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        assert exc.headers["content-type"].startswith("application/problem+json")
    else:  # pragma: no cover
        raise AssertionError("expected 404")
