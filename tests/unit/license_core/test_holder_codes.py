import pytest

from license_core.errors import InvalidHolderCode
from license_core.holder_codes import (HolderCodeType, mask_holder_code, mask_name,
                                       normalize_holder_code)


def test_resident_id_with_x_check() -> None:
    code, kind = normalize_holder_code("11010519491231002x")
    assert code == "11010519491231002X" and kind is HolderCodeType.RESIDENT_ID


def test_uscc_including_letter_first() -> None:
    code, kind = normalize_holder_code("11100000MB03271699")
    assert kind is HolderCodeType.USCC
    # GB 32100 codes may start with a letter (e.g. registration authority "Y" / "N")
    from stdnum.cn import uscc
    from license_core.holder_codes import uscc_check_character
    assert uscc_check_character("11100000MB0327169") == uscc.calc_check_digit("11100000MB0327169")
    body = "N2440300MA5F00001"
    letter_code = body + uscc_check_character(body)
    assert normalize_holder_code(letter_code, "001")[0] == letter_code


@pytest.mark.parametrize("bad, kind", [("110105194912310021", "111"), ("11100000MB03271698", "001"),
                                       ("12345", None), ("11010519491331002X", "111"), ("", None)])
def test_bad_check_or_shape_rejected(bad: str, kind: str | None) -> None:
    with pytest.raises(InvalidHolderCode) as info:
        normalize_holder_code(bad, kind)
    assert info.value.field == "holder.id"


def test_type_mismatch_rejected() -> None:
    with pytest.raises(InvalidHolderCode):
        normalize_holder_code("11010519491231002X", "001")


def test_masks_hide_the_middle() -> None:
    assert mask_holder_code("11010519491231002X") == "1101************2X"
    assert mask_name("张三丰") == "张**"
