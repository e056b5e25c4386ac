"""``elicense convert``: a mixed manifest with bad rows, parallel workers, kill -9 and resume,
and a rerun under new row ids that mints nothing twice."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path


from tests.conftest import run_cli as run
from sqlalchemy import text

from directory.db import make_engine
from license_core.holder_codes import uscc_check_character

BIZ, RESIDENCE, BIRTH, FOOD, PROPERTY = ("11100000MB03271699001", "11100000000013338W025",
                                         "11100000MB1A153849021", "11100000MB03271699012",
                                         "11100000MB1924618D001")
ISSUERS = {BIZ: "11440300MB2C928159", FOOD: "11440300MB2C928159",
           RESIDENCE: "114403000075436231", BIRTH: "114403000075420753",
           PROPERTY: "11440300MB2C8537XB"}
_RIC_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(n: int) -> str:
    first17 = f"44030419900101{n % 1000:03d}"
    total = sum(int(d) * w for d, w in zip(first17, _RIC_WEIGHTS))
    return first17 + "10X98765432"[total % 11]


def uscc(n: int) -> str:
    first17 = f"91440300MA5F{n % 100000:05d}"
    return first17 + uscc_check_character(first17)


def _good_row(i: int) -> dict[str, str]:
    """A valid row of one of five types (strings, as in a CSV), with a license number."""
    kind = i % 5
    row = {"row_id": f"R{i:05d}", "license_number": f"ZH-{i:05d}"}
    if kind == 0:
        row.update(type_code=BIZ, holder_id=uscc(i), holder_name=f"深圳测试{i}科技有限公司",
                   **{"data.name": f"深圳测试{i}科技有限公司", "data.entity_type": "有限责任公司",
                      "data.legal_representative": "张三", "data.established_on": "2019-03-01",
                      "data.address": "深圳市福田区福华一路1号",
                      "data.business_scope": "软件开发；信息技术咨询"})
    elif kind == 1:
        row.update(type_code=RESIDENCE, holder_id=resident_id(i), holder_name="李四",
                   valid_from="2026-01-01", valid_to="2026-12-31",
                   **{"data.name": "李四", "data.gender": "男", "data.id_number": resident_id(i),
                      "data.residence_address": "深圳市南山区科技园"})
    elif kind == 2:
        row.update(type_code=BIRTH, holder_id=resident_id(i), holder_name="王小明",
                   **{"data.newborn_name": "王小明", "data.gender": "男",
                      "data.birth_date": "2025-06-01", "data.birth_place": "广东省深圳市",
                      "data.gestational_weeks": "39", "data.birth_weight_g": "3,250",
                      "data.mother_name": "赵敏", "data.midwifery_institution": "深圳市妇幼保健院"})
    elif kind == 3:
        row.update(type_code=FOOD, holder_id=uscc(i), holder_name=f"深圳餐饮{i}有限公司",
                   **{"data.operator_name": f"深圳餐饮{i}有限公司",
                      "data.legal_representative": "钱七", "data.business_premises": "深圳市罗湖区",
                      "data.main_business_format": "餐饮服务经营者",
                      "data.business_items": "热食类食品制售",
                      "data.online_operation": "true" if i % 2 else "否"})
    else:
        row.update(type_code=PROPERTY, holder_id=resident_id(i), holder_name="孙八",
                   **{"data.right_holder": "孙八", "data.co_ownership": "单独所有",
                      "data.location": "深圳市宝安区新安街道", "data.unit_number": f"440306{i:06d}",
                      "data.right_type": "国有建设用地使用权/房屋所有权", "data.right_nature": "出让/商品房",
                      "data.usage": "城镇住宅用地/住宅", "data.area_sqm": "89.5"})
    return row


def make_scans(scans: Path) -> dict[str, str]:
    """Small scans of every supported kind, plus an unreadable one."""
    from PIL import Image, ImageDraw
    scans.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (420, 300), "white")
    ImageDraw.Draw(image).rectangle((20, 20, 400, 280), outline="red", width=6)
    image.save(scans / "paper.png")
    image.save(scans / "paper.jpg", quality=80)
    image.save(scans / "paper.pdf")  # a one-page PDF scan
    (scans / "garbage.png").write_bytes(b"this is not an image at all")
    return {"png": "paper.png", "jpeg": "paper.jpg", "pdf": "paper.pdf"}


def write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    columns: list[str] = ["row_id", "type_code", "holder_id", "holder_name", "license_number",
                          "scan", "valid_from", "valid_to"]
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def build_manifest(path: Path, scans: Path, good: int, *, start: int = 0
                   ) -> tuple[list[dict[str, str]], dict[str, str]]:
    """``good`` valid rows (scans rotating through none/PNG/JPEG/PDF) and the expected error
    code of each bad row (by row id). Returns (good rows, {bad row id: error code})."""
    kinds = make_scans(scans)
    rows = []
    for i in range(start, start + good):
        row = _good_row(i)
        row["scan"] = ["", kinds["png"], kinds["jpeg"], kinds["pdf"]][i % 4]
        rows.append(row)
    good_rows = list(rows)
    bad: dict[str, str] = {}

    def add(row_id: str, code: str, base: int, **changes: str) -> None:
        row = {**_good_row(base), "row_id": row_id, "license_number": f"BAD-{row_id}", **changes}
        rows.append(row)
        bad[row_id] = code

    wrong_check = uscc(90001)[:-1] + ("0" if uscc(90001)[-1] != "0" else "1")
    add("B-check", "invalid_holder_code", 90000, holder_id=wrong_check)
    add("B-type", "unknown_license_type", 90001, type_code="11100000MB03271699999")
    add("B-required", "validation_error", 90010, **{"data.address": ""})
    add("B-noscan", "scan_not_found", 90003, scan="missing.png")
    add("B-garbage", "malformed_document", 90004, scan="garbage.png")
    add("B-integer", "validation_error", 90007, **{"data.gestational_weeks": "thirty-nine"})
    # the number was issued before the batch (pre_issue), to another holder
    add("B-dupnum", "duplicate_license_number", 90005, license_number="PRE-ISSUED-1")
    add("R00000", "duplicate_row_id", 90006)  # reuses a good row's id
    write_manifest(path, rows)
    return good_rows, bad


def read_results(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "results.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["row_id", "status", "license_id", "pdf", "error_code", "error"]
    return {r["row_id"] + ("#dup" if r["error_code"] == "duplicate_row_id" else ""): r
            for r in rows}


def pre_issue(env: dict[str, str], tmp_path: Path) -> str:
    """A license with number PRE-ISSUED-1 minted by `elicense issue` before the batch."""
    row = _good_row(0)
    data = {k[5:]: v for k, v in row.items() if k.startswith("data.")}
    (tmp_path / "pre.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    done = run(env, "issue", "--type", BIZ, "--holder-id", uscc(80000), "--holder-name",
               "预先发证有限公司", "--data", str(tmp_path / "pre.json"), "--license-number",
               "PRE-ISSUED-1", "--out", str(tmp_path / "pre.pdf"))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def db_licenses(env: dict[str, str]) -> list[tuple[str, str, str, str]]:
    engine = make_engine(env["ELICENSE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT id, type_code, issuer_code, pdf_sha256 FROM licenses ORDER BY id"))]
    finally:
        engine.dispose()


def check_batch(env: dict[str, str], out: Path, good: list[dict[str, str]],
                bad: dict[str, str], pre_issued: str) -> dict[str, dict[str, str]]:
    """results.csv, the database and the PDFs agree: exactly the good rows, each once."""
    results = read_results(out)
    assert len(results) == len(good) + len(bad)
    for row in good:
        got = results[row["row_id"]]
        assert got["status"] == "issued", got
        assert got["pdf"] == f"{row['row_id']}.pdf" and got["error_code"] == ""
    for row_id, code in bad.items():
        got = results[row_id + ("#dup" if code == "duplicate_row_id" else "")]
        assert (got["status"], got["error_code"]) == ("failed", code), got
        assert got["error"] and not got["license_id"]
    licenses = db_licenses(env)
    minted = [lic for lic in licenses if lic[0] != pre_issued]
    assert len(minted) == len(good)  # nothing minted twice, nothing for a bad row
    by_type = Counter((t, i) for _, t, i, _ in minted)
    assert by_type == Counter((r["type_code"], ISSUERS[r["type_code"]]) for r in good)
    issued_ids = {results[r["row_id"]]["license_id"] for r in good}
    assert issued_ids == {lic[0] for lic in minted}  # no orphan: every license is a row's
    digests = {lic[0]: lic[3] for lic in licenses}
    for row in good:
        got = results[row["row_id"]]
        content = (out / got["pdf"]).read_bytes()
        assert content.startswith(b"%PDF") and content.rstrip().endswith(b"%%EOF")
        assert hashlib.sha256(content).hexdigest() == digests[got["license_id"]]
    assert not list(out.glob("*.tmp"))
    assert not (out / "results.journal.csv").exists()
    return results


def test_convert_mixed_manifest_with_workers(cli_env: dict[str, str], tmp_path: Path) -> None:
    pre_issued = pre_issue(cli_env, tmp_path)
    manifest, scans, out = tmp_path / "manifest.csv", tmp_path / "scans", tmp_path / "out"
    good, bad = build_manifest(manifest, scans, 32)

    first = run(cli_env, "convert", str(manifest), "--scans", str(scans), "--out", str(out),
                "--workers", "2", "--json")
    assert first.returncode == 1, first.stderr  # some rows failed
    summary = json.loads(first.stdout)
    assert (summary["rows"], summary["issued"], summary["failed"]) == (40, 32, 8), \
        [r for r in read_results(out).values() if r["status"] == "failed"]
    assert summary["minted"] == 32 and summary["replayed"] == 0
    assert "convert: 40 rows" in first.stderr  # plain progress lines when not a terminal
    results = check_batch(cli_env, out, good, bad, pre_issued)

    # a PDF scan row has the scan appended: more pages than the rendered license alone
    import pikepdf
    with pikepdf.open(out / "R00003.pdf") as scanned, pikepdf.open(out / "R00000.pdf") as plain:
        assert len(scanned.pages) > len(plain.pages)

    # rerun: every good row replays, one missing PDF is rewritten from the database
    (out / "R00001.pdf").unlink()
    again = run(cli_env, "convert", str(manifest), "--scans", str(scans), "--out", str(out),
                "--json")
    assert again.returncode == 1, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["minted"], summary["replayed"], summary["pdfs_written"]) == (0, 32, 1)
    assert read_results(out) == results
    check_batch(cli_env, out, good, bad, pre_issued)

    # new row ids, same license numbers: nothing new is minted
    renamed = tmp_path / "renamed.csv"
    with open(manifest, encoding="utf-8", newline="") as handle:
        rows = [dict(r, row_id="N" + r["row_id"]) for r in csv.DictReader(handle)]
    write_manifest(renamed, rows)
    out2 = tmp_path / "out2"
    third = run(cli_env, "convert", str(renamed), "--scans", str(scans), "--out", str(out2),
                "--json")
    assert third.returncode == 1
    assert json.loads(third.stdout)["issued"] == 0
    codes = Counter(r["error_code"] for r in read_results(out2).values())
    assert codes["duplicate_license_number"] == 32 + 1
    assert len(db_licenses(cli_env)) == 32 + 1


def test_convert_all_good_exits_0_and_manifest_errors_exit_2(cli_env: dict[str, str],
                                                             tmp_path: Path) -> None:
    manifest, out = tmp_path / "ok.csv", tmp_path / "out"
    write_manifest(manifest, [_good_row(i) for i in range(3)])
    done = run(cli_env, "convert", str(manifest), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "3 rows: 3 issued" in done.stdout

    broken = tmp_path / "broken.csv"
    broken.write_text("row_id,type_code,holder_id\nx,y,z\n", encoding="utf-8")
    refused = run(cli_env, "convert", str(broken), "--out", str(out), "--json")
    assert refused.returncode == 2 and json.loads(refused.stdout)["code"] == "invalid_manifest"
    unknown_issuer = run(cli_env, "convert", str(manifest), "--out", str(out), "--issuer",
                         "11440300MB2C928150", "--json")
    assert unknown_issuer.returncode == 1
    assert json.loads(unknown_issuer.stdout)["code"] == "unknown_issuer"


def test_convert_help_documents_the_manifest() -> None:
    from click.testing import CliRunner

    from verify_api.cli import cli
    shown = CliRunner().invoke(cli, ["convert", "--help"]).output
    for column in ("row_id", "type_code", "holder_id", "holder_name", "license_number", "scan",
                   "valid_from", "valid_to", "data.<key>", "results.csv", "error_code"):
        assert column in shown


def _group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_convert_killed_midway_resumes_exactly_once(cli_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    pre_issued = pre_issue(cli_env, tmp_path)
    manifest, scans, out = tmp_path / "manifest.csv", tmp_path / "scans", tmp_path / "out"
    good, bad = build_manifest(manifest, scans, 24)
    proc = subprocess.Popen([sys.executable, "-m", "verify_api", "convert", str(manifest),
                             "--scans", str(scans), "--out", str(out), "--workers", "2"],
                            env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    journal = out / "results.journal.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text(encoding="utf-8").count("\n") > 8:
            break
        assert proc.poll() is None, "convert finished before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers must stop by themselves
    proc.wait()
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_alive(proc.pid), "worker processes outlived the killed parent"
    partial = len(db_licenses(cli_env)) - 1
    assert 0 < partial < len(good)
    assert not (out / "results.csv").exists()

    resumed = run(cli_env, "convert", str(manifest), "--scans", str(scans), "--out", str(out),
                  "--workers", "2", "--json")
    assert resumed.returncode == 1, resumed.stderr
    summary = json.loads(resumed.stdout)
    unexpected = [r for r in read_results(out).values()
                  if r["status"] == "failed" and r["row_id"] not in bad]
    assert summary["issued"] == len(good), (summary, unexpected)
    assert (summary["replayed"], summary["minted"]) == (partial, len(good) - partial), summary
    check_batch(cli_env, out, good, bad, pre_issued)
