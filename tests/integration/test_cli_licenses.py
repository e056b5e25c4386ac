"""``elicense issue``, the lifecycle commands and ``sign-document`` on a fresh data directory."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path


from tests.conftest import run_cli as run

from license_core.identifiers import LicenseIdentifier

from .test_convert import BIZ, ISSUERS, resident_id, uscc

TEACHER = "111000000000133X5E002"  # issued by two departments
BIZ_DATA = {"name": "深圳示例科技有限公司", "entity_type": "有限责任公司",
            "legal_representative": "张三", "established_on": "2020-05-01",
            "address": "深圳市福田区福华一路1号", "business_scope": "软件开发"}


def problem(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    return json.loads(done.stdout)["code"]


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


def signature_count(path: Path) -> int:
    """Signatures proper (document timestamps of B-LTA not counted)."""
    from pyhanko.pdf_utils.generic import NameObject
    from pyhanko.pdf_utils.reader import PdfFileReader
    with open(path, "rb") as handle:
        return sum(s.sig_object_type == NameObject("/Sig")
                   for s in PdfFileReader(handle, strict=False).embedded_signatures)


def test_issue_lifecycle_and_amend(cli_env: dict[str, str], tmp_path: Path) -> None:
    data = write_json(tmp_path / "biz.json", BIZ_DATA)
    holder = uscc(4242)
    out = tmp_path / "biz.pdf"
    done = run(cli_env, "issue", "--type", BIZ, "--holder-id", holder, "--holder-name",
               "深圳示例科技有限公司", "--data", str(data), "--license-number", "SZ-0001",
               "--out", str(out))
    assert done.returncode == 0, done.stderr
    license_id = done.stdout.strip()
    ident = LicenseIdentifier.parse(license_id)  # the identifier, and only it, on stdout
    assert (ident.type_code, ident.issuer_code, ident.version) == (BIZ, ISSUERS[BIZ], 1)
    content = out.read_bytes()
    assert content.startswith(b"%PDF") and content.rstrip().endswith(b"%%EOF")
    assert signature_count(out) == 1
    assert not list(tmp_path.glob("*.tmp"))
    if shutil.which("pdftotext"):
        shown = subprocess.run(["pdftotext", str(out), "-"], capture_output=True,
                               text=True).stdout
        assert "深圳示例科技有限公司" in shown and "SZ-0001" in shown

    # the same number again is refused, as are bad inputs; nothing is written for them
    again = tmp_path / "again.pdf"
    base = ["issue", "--holder-name", "某公司", "--data", str(data), "--out", str(again), "--json"]
    assert problem(run(cli_env, *base, "--type", BIZ, "--holder-id", holder,
                       "--license-number", "SZ-0001")) == "duplicate_license_number"
    # (row-level errors such as a wrong check digit or an unknown type: test_convert.py)
    ambiguous = run(cli_env, *base, "--type", TEACHER, "--holder-id", resident_id(7))
    assert problem(ambiguous) == "issuer_required"
    assert "pass --issuer" in json.loads(ambiguous.stdout)["detail"]
    assert not again.exists()

    # a person's license from a scan, JSON output
    from PIL import Image
    Image.new("RGB", (300, 200), "white").save(tmp_path / "paper.jpg")
    person = resident_id(11)
    residence = write_json(tmp_path / "res.json", {"name": "李四", "gender": "女",
                                                   "id_number": person,
                                                   "residence_address": "深圳市南山区"})
    scanned = run(cli_env, "issue", "--type", "11100000000013338W025", "--holder-id", person,
                  "--holder-name", "李四", "--data", str(residence), "--scan",
                  str(tmp_path / "paper.jpg"), "--valid-to", "2027-06-30",
                  "--out", str(tmp_path / "res.pdf"), "--json")
    assert scanned.returncode == 0, scanned.stderr
    view = json.loads(scanned.stdout)
    assert view["holder"]["id"] == person and view["valid_to"] == "2027-06-30"
    assert view["status"] == "valid" and view["out"] == str(tmp_path / "res.pdf")
    import pikepdf
    with pikepdf.open(tmp_path / "res.pdf") as pdf:
        assert len(pdf.pages) >= 2  # the rendered page and the scan

    # lifecycle, acting as the license's own issuer
    suspended = run(cli_env, "suspend", license_id, "--reason", "investigation", "--json")
    assert suspended.returncode == 0, suspended.stderr
    assert json.loads(suspended.stdout)["status"] == "suspended"
    resumed = run(cli_env, "resume", license_id, "--reason", "investigation_closed")
    assert resumed.returncode == 0 and "valid" in resumed.stdout
    bad_reason = run(cli_env, "revoke", license_id, "--reason", "because")
    assert bad_reason.returncode == 2  # usage: the reason codes are listed in --help

    changes = write_json(tmp_path / "change.json", {"address": "深圳市南山区科苑路2号"})
    amended_pdf = tmp_path / "v2.pdf"
    amended = run(cli_env, "amend", license_id, "--data", str(changes), "--reason", "change",
                  "--note", "迁址", "--out", str(amended_pdf))
    assert amended.returncode == 0, amended.stderr
    new_id = amended.stdout.strip()
    assert LicenseIdentifier.parse(new_id).version == 2
    assert amended_pdf.read_bytes().startswith(b"%PDF")
    assert problem(run(cli_env, "revoke", license_id, "--reason", "cancelled",
                       "--json")) == "invalid_transition"  # superseded
    revoked = run(cli_env, "revoke", new_id, "--reason", "issued_in_error", "--note", "录入错误",
                  "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["status"] == "revoked"
    wrong_check = new_id[:-1] + ("Q" if new_id[-1] != "Q" else "Z")
    assert problem(run(cli_env, "revoke", wrong_check, "--reason", "cancelled",
                       "--json")) == "invalid_identifier"


def test_sign_document_countersign_and_locked_license(cli_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    import pikepdf
    document = pikepdf.new()
    document.add_blank_page(page_size=(595, 842))
    document.save(tmp_path / "notice.pdf")

    first, second = tmp_path / "signed1.pdf", tmp_path / "signed2.pdf"
    done = run(cli_env, "sign-document", str(tmp_path / "notice.pdf"), "--issuer",
               ISSUERS[BIZ], "--out", str(first), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["issuer_code"] == ISSUERS[BIZ]
    assert signature_count(first) == 1
    counter = run(cli_env, "sign-document", str(first), "--issuer", "114403000075420753",
                  "--out", str(second))
    assert counter.returncode == 0, counter.stderr
    assert signature_count(second) == 2
    assert second.read_bytes().startswith(first.read_bytes())  # an incremental update

    assert problem(run(cli_env, "sign-document", str(tmp_path / "notice.pdf"), "--issuer",
                       "11440300MB2C928150", "--out", str(tmp_path / "x.pdf"),
                       "--json")) == "unknown_issuer"

    data = write_json(tmp_path / "biz.json", BIZ_DATA)
    license_pdf = tmp_path / "license.pdf"
    issued = run(cli_env, "issue", "--type", BIZ, "--holder-id", uscc(777), "--holder-name",
                 "深圳示例科技有限公司", "--data", str(data), "--out", str(license_pdf))
    assert issued.returncode == 0, issued.stderr
    locked = run(cli_env, "sign-document", str(license_pdf), "--issuer", ISSUERS[BIZ],
                 "--out", str(tmp_path / "locked.pdf"), "--json")
    assert problem(locked) == "document_locked"
    assert not (tmp_path / "locked.pdf").exists()
