import base64
import hashlib
import time
import zlib
from datetime import date, datetime, timedelta, timezone

import cbor2
import pytest
import qrcode
import zxingcpp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from license_core.canonical import data_digest
from license_core.holder_codes import mask_name
from license_core.offline import TrustListPayload, verify_qr_offline
from license_core.qr_token import (InvalidToken, QrClaims, QrKey, QrKeyStatus, TokenFailure,
                                   decode_token, encode_token, epoch_day, kid_for_certificate,
                                   qr_url, token_from_payload, verify_token)

LICENSE_ID = "1.2.156.3005.2.11100000000013338W011.11110000000021135M.20230329701.003.Y"
BASE_URL = "http://127.0.0.1:8000"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
KID = bytes(range(8))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.fixture(scope="module")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def qr_key(private_key: ec.EllipticCurvePrivateKey, *, kid: bytes = KID,
           not_before: datetime = T0 - timedelta(days=30),
           not_after: datetime = T0 + timedelta(days=365),
           status: QrKeyStatus = QrKeyStatus.ACTIVE) -> QrKey:
    return QrKey(kid=kid, public_key=private_key.public_key(), not_before=not_before,
                 not_after=not_after, status=status)


def printed_claims(issued: datetime = T0) -> QrClaims:
    return QrClaims(license_id=LICENSE_ID, issued_at=int(issued.timestamp()),
                    valid_to_day=epoch_day(date(2030, 12, 31)),
                    holder_name_masked=mask_name("张三丰"),
                    data_digest=data_digest({"name": "张三丰", "no": "A1"}))


def qr_version(text: str) -> int:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    return qr.version


def test_round_trip(private_key) -> None:
    claims = printed_claims()
    token = encode_token(claims, private_key=private_key, kid=KID)
    decoded = decode_token(token)
    assert decoded.claims == claims and decoded.key_id == KID
    result = verify_token(token, keys={KID: qr_key(private_key)}, at=T0 + timedelta(days=1))
    assert result.signature_ok and result.signature_valid and result.key_known
    assert not result.expired and not result.license_expired
    assert result.failure is None and result.claims == claims
    assert result.key_id_text == b64url(KID)
    assert str(result.license_identifier) == LICENSE_ID


def test_presentation_token_round_trip_and_expiry(private_key) -> None:
    claims = printed_claims().for_presentation(at=T0, nonce=b"\x01" * 8)
    assert claims.is_presentation and claims.expires_at == claims.issued_at + 300
    token = encode_token(claims, private_key=private_key, kid=KID)
    keys = {KID: qr_key(private_key)}
    fresh = verify_token(token, keys=keys, at=T0 + timedelta(minutes=4))
    assert fresh.signature_ok and not fresh.expired
    late = verify_token(token, keys=keys, at=T0 + timedelta(minutes=5))
    assert late.signature_ok and late.expired  # a fact, not an exception
    assert decode_token(token).claims.nonce == b"\x01" * 8


def test_license_valid_to_is_reported(private_key) -> None:
    token = encode_token(printed_claims(), private_key=private_key, kid=KID)
    keys = {KID: qr_key(private_key, not_after=T0 + timedelta(days=3650))}
    # 2030-12-31 ends in China at 2030-12-31T16:00Z.
    assert not verify_token(token, keys=keys,
                            at=datetime(2030, 12, 31, 15, 59, tzinfo=timezone.utc)).license_expired
    after = verify_token(token, keys=keys, at=datetime(2030, 12, 31, 16, 0, tzinfo=timezone.utc))
    assert after.license_expired and after.signature_ok


def test_tampered_payload_fails_signature(private_key) -> None:
    token = encode_token(printed_claims(), private_key=private_key, kid=KID)
    message = cbor2.loads(zlib.decompress(base64.urlsafe_b64decode(token + "==")))
    protected, unprotected, payload, signature = message.value
    claims = cbor2.loads(payload)
    claims[4] = "李**"
    forged = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, cbor2.dumps(claims), signature]))
    forged_token = b64url(zlib.compress(forged))
    result = verify_token(forged_token, keys={KID: qr_key(private_key)}, at=T0)
    assert result.key_known and not result.signature_valid and not result.signature_ok
    assert result.failure is TokenFailure.BAD_SIGNATURE
    assert result.claims.holder_name_masked == "李**"


def test_other_key_with_same_kid_fails(private_key) -> None:
    token = encode_token(printed_claims(), private_key=private_key, kid=KID)
    other = ec.generate_private_key(ec.SECP256R1())
    result = verify_token(token, keys={KID: qr_key(other)}, at=T0)
    assert result.failure is TokenFailure.BAD_SIGNATURE


def test_unknown_kid(private_key) -> None:
    token = encode_token(printed_claims(), private_key=private_key, kid=b"\xff" * 8)
    result = verify_token(token, keys={KID: qr_key(private_key)}, at=T0)
    assert not result.key_known and not result.signature_ok
    assert result.failure is TokenFailure.UNKNOWN_KEY and result.key_status is None


def test_retired_key_still_verifies_tokens_issued_in_its_validity(private_key) -> None:
    token = encode_token(printed_claims(T0), private_key=private_key, kid=KID)
    retired = qr_key(private_key, not_after=T0 + timedelta(days=1), status=QrKeyStatus.RETIRED)
    result = verify_token(token, keys={KID: retired}, at=T0 + timedelta(days=900))
    assert result.signature_ok and result.key_status is QrKeyStatus.RETIRED


def test_token_issued_before_key_not_before_rejected(private_key) -> None:
    token = encode_token(printed_claims(T0), private_key=private_key, kid=KID)
    key = qr_key(private_key, not_before=T0 + timedelta(seconds=1))
    result = verify_token(token, keys={KID: key}, at=T0 + timedelta(days=1))
    assert result.signature_valid and not result.signature_ok
    assert result.failure is TokenFailure.KEY_NOT_VALID_AT_ISSUANCE


def test_token_issued_after_key_not_after_rejected(private_key) -> None:
    token = encode_token(printed_claims(T0), private_key=private_key, kid=KID)
    key = qr_key(private_key, not_before=T0 - timedelta(days=10),
                 not_after=T0 - timedelta(seconds=1), status=QrKeyStatus.RETIRED)
    result = verify_token(token, keys={KID: key}, at=T0)
    assert result.failure is TokenFailure.KEY_NOT_VALID_AT_ISSUANCE and not result.signature_ok


def test_token_from_the_future_rejected(private_key) -> None:
    token = encode_token(printed_claims(T0 + timedelta(hours=1)), private_key=private_key,
                         kid=KID)
    result = verify_token(token, keys={KID: qr_key(private_key)}, at=T0)
    assert result.signature_valid and result.failure is TokenFailure.ISSUED_IN_FUTURE


def _wrap(obj) -> str:
    return b64url(zlib.compress(cbor2.dumps(obj)))


@pytest.mark.parametrize("token", [
    "", "!!!", "a", "a" * 2000, "AAAA", b64url(b"not zlib at all"),
    _wrap([1, 2, 3]), _wrap(cbor2.CBORTag(98, [b"", {}, b"", b""])),
    _wrap(cbor2.CBORTag(18, [b"", {}, b"", b"\x00" * 64])),
    _wrap(cbor2.CBORTag(18, [cbor2.dumps({1: -35, 4: KID}), {}, cbor2.dumps({}), b"\0" * 64])),
    _wrap(cbor2.CBORTag(18, [cbor2.dumps({1: -7, 4: KID}), {}, cbor2.dumps({1: "x"}),
                             b"\0" * 64])),
    b64url(zlib.compress(b"\x81" * 1500 + b"\x00")),  # deep nesting
    b64url(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""])))[:-3]),  # truncated
])
def test_garbage_is_invalid_token(token: str) -> None:
    with pytest.raises(InvalidToken):
        decode_token(token)


@pytest.mark.parametrize("bad", [
    {2: 1, 4: "张**", 5: b"\0" * 16},  # no license id
    {1: LICENSE_ID.replace(".Y", ".Z"), 2: 1, 4: "张**", 5: b"\0" * 16},  # wrong check char
    {1: LICENSE_ID, 2: True, 4: "张**", 5: b"\0" * 16},
    {1: LICENSE_ID, 2: 1, 4: "张**", 5: b"\0" * 15},
    {1: LICENSE_ID, 2: 1, 4: "张**", 5: b"\0" * 16, 6: 100},  # expiry without nonce
    {1: LICENSE_ID, 2: 1, 4: "张**", 5: b"\0" * 16, 9: 1},  # unknown claim
])
def test_bad_claims_are_invalid_token(private_key, bad) -> None:
    protected = cbor2.dumps({1: -7, 4: KID})
    token = _wrap(cbor2.CBORTag(18, [protected, {}, cbor2.dumps(bad), b"\1" * 64]))
    with pytest.raises(InvalidToken):
        verify_token(token, keys={KID: qr_key(private_key)}, at=T0)


def test_zlib_bomb_is_rejected_quickly() -> None:
    bomb = b64url(zlib.compress(b"\0" * 50_000_000, 9))
    started = time.perf_counter()
    with pytest.raises(InvalidToken):
        decode_token(bomb)
    # A bomb small enough to pass the length cap is refused after bounded inflation.
    small_bomb = b64url(zlib.compress(b"\0" * 700_000, 9))
    assert len(small_bomb) <= 1024
    with pytest.raises(InvalidToken):
        decode_token(small_bomb)
    assert time.perf_counter() - started < 0.5


def test_token_from_payload(private_key) -> None:
    token = encode_token(printed_claims(), private_key=private_key, kid=KID)
    url = qr_url(BASE_URL + "/", token)
    assert url == f"{BASE_URL}/v/{token}"
    assert token_from_payload(url) == token
    assert token_from_payload(f"  {url}?src=scan\n") == token
    assert token_from_payload(f"https://e.gov.cn/licenses/v/{token}/") == token
    assert token_from_payload(token) == token
    for bad in ["http://x/other/abc", "http://x/v/", "not a token!", "a" * 3000]:
        with pytest.raises(InvalidToken):
            token_from_payload(bad)


def test_kid_for_certificate(private_key) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qr")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private_key.public_key()).serial_number(1)
            .not_valid_before(T0).not_valid_after(T0 + timedelta(days=1))
            .sign(private_key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    assert kid_for_certificate(der) == hashlib.sha256(der).digest()[:8]
    assert kid_for_certificate(cert) == kid_for_certificate(der)
    key = QrKey.from_certificate(cert)
    assert key.kid == kid_for_certificate(der) and key.not_after == T0 + timedelta(days=1)


def test_qr_version_at_most_13(private_key) -> None:
    printed = encode_token(printed_claims(), private_key=private_key, kid=KID)
    presented = encode_token(printed_claims().for_presentation(at=T0), private_key=private_key,
                             kid=KID)
    assert qr_version(qr_url(BASE_URL, printed)) <= 13
    assert qr_version(qr_url(BASE_URL, presented)) <= 13


def test_zxing_decodes_150_dpi_rendering(private_key, tmp_path) -> None:
    url = qr_url(BASE_URL, encode_token(printed_claims().for_presentation(at=T0),
                                        private_key=private_key, kid=KID))
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=4)
    qr.add_data(url)
    qr.make(fit=True)
    path = tmp_path / "qr.png"
    qr.make_image(fill_color="black", back_color="white").save(path)
    side = round(25 / 25.4 * 150)  # printed 25 mm wide, rendered at 150 dpi
    image = Image.open(path).convert("L").resize((side, side), Image.LANCZOS)
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [url]


def test_verify_qr_offline(private_key) -> None:
    trust_list = TrustListPayload(issued_at=T0 - timedelta(hours=1),
                                  expires_at=T0 + timedelta(days=7), cas=(),
                                  qr_keys=(qr_key(private_key),))
    trust_list = TrustListPayload.from_json(trust_list.to_json())  # survives the JSON form
    url = qr_url(BASE_URL, encode_token(printed_claims(), private_key=private_key, kid=KID))
    ok = verify_qr_offline(url, trust_list, at=T0)
    assert ok.well_formed and ok.signature_ok and ok.valid_offline and ok.key_id == b64url(KID)
    stale = verify_qr_offline(url, trust_list, at=T0 + timedelta(days=8))
    assert stale.signature_ok and not stale.trust_list_current and not stale.valid_offline
    garbage = verify_qr_offline("http://x/v/AAAA", trust_list, at=T0)
    assert not garbage.well_formed and not garbage.signature_ok and garbage.detail
    unknown = verify_qr_offline(
        encode_token(printed_claims(), private_key=private_key, kid=b"\1" * 8), trust_list, at=T0)
    assert unknown.well_formed and unknown.failure is TokenFailure.UNKNOWN_KEY


def test_token_holder_name_is_short_and_masked() -> None:
    from license_core.qr_token import token_holder_name
    assert token_holder_name("张三丰") == "张*"
    assert token_holder_name("深圳市前海示例科技有限公司") == "深圳*"
    assert token_holder_name("王") == "王"
