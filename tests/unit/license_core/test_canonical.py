import hashlib
import math

import pytest

from license_core.canonical import canonical_json, data_digest
from license_core.errors import ValidationFailed


def test_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": [1, 2, {"d": "张三", "c": None}]}) == (
        '{"a":[1,2,{"c":null,"d":"张三"}],"b":1}'.encode("utf-8"))


def test_key_order_does_not_matter() -> None:
    assert canonical_json({"x": 1, "y": 2}) == canonical_json({"y": 2, "x": 1})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rejects_nan_and_infinity(bad: float) -> None:
    with pytest.raises(ValidationFailed):
        canonical_json({"v": bad})


def test_rejects_non_string_keys() -> None:
    with pytest.raises(ValidationFailed):
        canonical_json({"a": {1: "x"}})


def test_rejects_unserialisable() -> None:
    with pytest.raises(ValidationFailed):
        canonical_json({"a": object()})


def test_data_digest() -> None:
    data = {"name": "张三", "no": "A1"}
    digest = data_digest(data)
    assert len(digest) == 16
    assert digest == hashlib.sha256(canonical_json(data)).digest()[:16]
    assert data_digest({"no": "A1", "name": "张三"}) == digest
    assert data_digest({"name": "张三", "no": "A2"}) != digest


def test_data_digest_requires_object() -> None:
    with pytest.raises(ValidationFailed):
        data_digest([1, 2])  # type: ignore[arg-type]
