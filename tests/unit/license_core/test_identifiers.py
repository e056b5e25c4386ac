import pytest

from license_core.errors import InvalidIdentifier
from license_core.identifiers import LicenseIdentifier, check_character

SPEC_VECTORS = [
    "1.2.156.3005.2.11100000000013338W011.11110000000021135M.20230329701.003.Y",
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U",
    "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0",
    "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F",
    "1.2.156.3005.2.11100000MB03271699022.340100.000000016.001.9",
]


@pytest.mark.parametrize("text", SPEC_VECTORS)
def test_spec_vectors_validate_and_round_trip(text: str) -> None:
    ident = LicenseIdentifier.parse(text)
    assert str(ident) == text


@pytest.mark.parametrize("text", SPEC_VECTORS)
def test_every_other_check_character_is_rejected(text: str) -> None:
    body, real = text.rsplit(".", 1)
    for wrong in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*":
        if wrong != real:
            with pytest.raises(InvalidIdentifier):
                LicenseIdentifier.parse(f"{body}.{wrong}")


def test_single_character_change_in_body_is_detected() -> None:
    text = SPEC_VECTORS[0]
    mutated = text.replace("20230329701", "20230329702")
    with pytest.raises(InvalidIdentifier):
        LicenseIdentifier.parse(mutated)


@pytest.mark.parametrize("bad", [
    "", "1.2.156.3005.2", "2.2.156.3005.2.11100000000013338W011.11110000000021135M.1.001.0",
    "1.2.156.3005.2.11100000000013338W011.11110000000021135M.1.01.0",
    "1.2.156.3005.2.11100000000013338W01.11110000000021135M.1.001.0",
    "1.2.156.3005.2.11100000000013338X011.11110000000021135M.1.001.0",  # bad USCC check
    "1.2.156.3005.2.11100000000013338W011.11110000000021135M.1.001.0.0",
    "x" * 500,
])
def test_malformed_identifiers_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        LicenseIdentifier.parse(bad)


def test_build_and_next_version() -> None:
    ident = LicenseIdentifier("11100000000013338W025", "114403000075436231", "000001", 1)
    assert ident.check == check_character("11100000000013338W025", "114403000075436231",
                                          "000001", "001")
    amended = LicenseIdentifier.parse(str(ident.with_version(2)))
    assert amended.version == 2 and amended.serial == "000001"
