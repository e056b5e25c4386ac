"""Consistency checks for the demo license information directory (政务证照信息资源目录)."""

from __future__ import annotations

import json
import re
from importlib.resources import files

import pytest
from stdnum.cn import uscc

FIELD_TYPES = {"string", "text", "date", "integer", "number", "enum", "boolean"}
SHARING_LEVELS = {"unconditional", "conditional", "none"}
HOLDER_KINDS = {"person", "organization"}
LEVELS = {"national", "provincial", "municipal", "district"}
KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
TYPE_CODE_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}[0-9]{3}$")


@pytest.fixture(scope="module")
def catalog() -> dict:
    text = (files("directory") / "demo_catalog.json").read_text(encoding="utf-8")
    return json.loads(text)


@pytest.fixture(scope="module")
def types(catalog: dict) -> list[dict]:
    return catalog["license_types"]


def test_format(catalog: dict) -> None:
    assert catalog["format"] == "elicense-catalog/1"
    assert set(catalog) >= {"format", "issuers", "license_types"}


def test_sizes(catalog: dict) -> None:
    assert len(catalog["license_types"]) >= 10
    assert len(catalog["issuers"]) >= 6


def test_issuers(catalog: dict) -> None:
    codes = [i["code"] for i in catalog["issuers"]]
    assert len(codes) == len(set(codes)), "duplicate issuer code"
    for issuer in catalog["issuers"]:
        code = issuer["code"]
        assert len(code) == 18 and uscc.is_valid(code), code
        assert issuer["name"]
        assert re.fullmatch(r"[0-9]{6}", issuer["area_code"])
        assert issuer["area_code"].startswith("44")  # Guangdong
        assert issuer["level"] in LEVELS
        # government bodies (机关, "11") carry their area code in positions 3-8
        if code.startswith("11"):
            assert code[2:8] == issuer["area_code"], code


def test_every_uscc_valid(catalog: dict, types: list[dict]) -> None:
    all_codes = [i["code"] for i in catalog["issuers"]]
    for t in types:
        all_codes.append(t["defining_body"]["code"])
        all_codes.append(t["code"][:18])
        all_codes.extend(t["issuer_codes"])
    for code in all_codes:
        assert len(code) == 18 and uscc.is_valid(code), code


def test_type_codes(types: list[dict]) -> None:
    codes = [t["code"] for t in types]
    assert len(codes) == len(set(codes)), "duplicate type code"
    for t in types:
        assert TYPE_CODE_RE.fullmatch(t["code"]), t["code"]
        assert t["code"][:18] == t["defining_body"]["code"], t["code"]
        assert t["defining_body"]["name"]


def test_defining_bodies_consistent(types: list[dict]) -> None:
    names: dict[str, str] = {}
    for t in types:
        body = t["defining_body"]
        assert names.setdefault(body["code"], body["name"]) == body["name"]
    codes: dict[str, str] = {}
    for code, name in names.items():
        assert codes.setdefault(name, code) == code


def test_issuer_codes_refer_to_listed_issuers(catalog: dict, types: list[dict]) -> None:
    known = {i["code"] for i in catalog["issuers"]}
    used: set[str] = set()
    for t in types:
        assert t["issuer_codes"], t["code"]
        assert len(t["issuer_codes"]) == len(set(t["issuer_codes"]))
        for code in t["issuer_codes"]:
            assert code in known, (t["name"], code)
        used.update(t["issuer_codes"])
    assert used == known, f"unused issuers: {known - used}"


def test_enumerations(types: list[dict]) -> None:
    for t in types:
        assert t["holder_kind"] in HOLDER_KINDS, t["name"]
        assert t["sharing_level"] in SHARING_LEVELS, t["name"]
        assert t["issuing_level"] in LEVELS, t["name"]
        v = t["validity_years"]
        assert v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0), t["name"]
    assert {t["sharing_level"] for t in types} == SHARING_LEVELS
    assert {t["holder_kind"] for t in types} == HOLDER_KINDS


def test_service_items(types: list[dict]) -> None:
    seen: set[str] = set()
    for t in types:
        assert t["service_items"], t["name"]
        for item in t["service_items"]:
            assert item["name"]
            assert re.fullmatch(r"[0-9A-Z]{20,40}", item["code"]), item["code"]
            assert item["code"] not in seen, item["code"]
            seen.add(item["code"])


def test_fields(types: list[dict]) -> None:
    for t in types:
        fields = t["fields"]
        assert 4 <= len(fields) <= 10, t["name"]
        keys = [f["key"] for f in fields]
        assert len(keys) == len(set(keys)), f"duplicate field key in {t['name']}"
        assert any(f["required"] for f in fields), t["name"]
        for f in fields:
            assert KEY_RE.fullmatch(f["key"]), f["key"]
            assert f["label"] and re.search(r"[\u4e00-\u9fff]", f["label"]), f["key"]
            assert f["type"] in FIELD_TYPES, f["key"]
            assert isinstance(f["required"], bool) and isinstance(f["public"], bool)
            if f["type"] == "enum":
                choices = f.get("choices")
                assert choices and len(choices) == len(set(choices)), f["key"]
                assert all(isinstance(c, str) and c for c in choices)
            else:
                assert "choices" not in f, f["key"]


def test_sensitive_fields_not_public(types: list[dict]) -> None:
    for t in types:
        for f in t["fields"]:
            if "id_number" in f["key"]:
                assert f["public"] is False, (t["name"], f["key"])
            if t["holder_kind"] == "person" and f["key"] in {"birth_date", "address", "residence_address"}:
                assert f["public"] is False, (t["name"], f["key"])


def test_expected_types_present(types: list[dict]) -> None:
    by_name = {t["name"]: t for t in types}
    expected = {
        "营业执照": ("organization", None, "unconditional"),
        "食品经营许可证": ("organization", 5, None),
        "医师执业证书": ("person", None, None),
        "教师资格证书": ("person", None, None),
        "不动产权证书": ("person", None, None),
        "建筑施工企业安全生产许可证": ("organization", 3, None),
        "出生医学证明": ("person", None, "none"),
        "居住证": ("person", 1, None),
    }
    for name, (kind, validity, sharing) in expected.items():
        assert name in by_name, name
        t = by_name[name]
        assert t["holder_kind"] == kind, name
        assert t["validity_years"] == validity, name
        if sharing is not None:
            assert t["sharing_level"] == sharing, name
