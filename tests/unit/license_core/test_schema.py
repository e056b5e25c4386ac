import pytest

from license_core.errors import ValidationFailed
from license_core.schema import FieldSpec, FieldType, validate_license_data

FIELDS = (
    FieldSpec("name", "名称", FieldType.STRING, required=True),
    FieldSpec("founded", "成立日期", FieldType.DATE),
    FieldSpec("staff", "人数", FieldType.INTEGER),
    FieldSpec("kind", "类型", FieldType.ENUM, choices=("有限责任公司", "个体工商户")),
    FieldSpec("active", "存续", FieldType.BOOLEAN),
)


def test_valid_data_passes() -> None:
    data = {"name": "深圳某某科技有限公司", "founded": "2020-01-02", "staff": 3,
            "kind": "个体工商户", "active": True}
    assert validate_license_data(FIELDS, data) == data


@pytest.mark.parametrize("data, field", [
    ({}, "data.name"),
    ({"name": "x", "founded": "2020-13-01"}, "data.founded"),
    ({"name": "x", "founded": "20200101"}, "data.founded"),
    ({"name": "x", "staff": True}, "data.staff"),
    ({"name": "x", "staff": "3"}, "data.staff"),
    ({"name": "x", "kind": "公司"}, "data.kind"),
    ({"name": "x", "active": "yes"}, "data.active"),
    ({"name": "x", "nope": 1}, "data.nope"),
    ({"name": "x" * 201}, "data.name"),
])
def test_violations_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_license_data(FIELDS, data)
    assert info.value.field == field


def test_partial_allows_missing_required() -> None:
    assert validate_license_data(FIELDS, {"staff": 4}, partial=True) == {"staff": 4}
