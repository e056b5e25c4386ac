"""Holder codes: resident ID (GB 11643, type ``111``) and USCC (GB 32100, type ``001``)."""

from __future__ import annotations

import enum
import re

from stdnum.cn import ric

from .errors import InvalidHolderCode

__all__ = ["HolderCodeType", "is_valid_resident_id", "is_valid_uscc", "uscc_check_character", "normalize_holder_code",
           "mask_holder_code", "mask_name", "code_type_for"]

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}$")
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]  # 3^(i-1) mod 31 for i = 1..17


class HolderCodeType(str, enum.Enum):
    RESIDENT_ID = "111"
    USCC = "001"


def uscc_check_character(first17: str) -> str:
    """GB 32100 check character: (31 - sum(value * 3^(i-1) mod 31) mod 31) mod 31."""
    total = sum(USCC_ALPHABET.index(ch) * w for ch, w in zip(first17, _USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    """A unified social credit code; unlike some libraries, a leading letter is allowed."""
    return (isinstance(code, str) and bool(_USCC.match(code))
            and uscc_check_character(code[:17]) == code[17])


def is_valid_resident_id(code: str) -> bool:
    if not isinstance(code, str) or len(code) != 18:
        return False
    try:
        ric.validate(code)
    except Exception:  # stdnum raises its own ValidationError family
        return False
    return True


def code_type_for(code: str) -> HolderCodeType:
    """Guess the code type from its shape (18 chars each): a resident ID has a birth date."""
    if is_valid_resident_id(code):
        return HolderCodeType.RESIDENT_ID
    if is_valid_uscc(code):
        return HolderCodeType.USCC
    raise InvalidHolderCode(f"{_mask(code)} is neither a valid resident ID nor a valid USCC",
                            field="holder.id")


def normalize_holder_code(code: str, code_type: HolderCodeType | str | None = None, *,
                          field: str = "holder.id") -> tuple[str, HolderCodeType]:
    """Validate a holder code; return it upper-cased with its type.

    Raises:
        InvalidHolderCode: wrong length, charset or check character.
    """
    if not isinstance(code, str):
        raise InvalidHolderCode("holder code must be text", field=field)
    value = code.strip().upper()
    if code_type is None:
        try:
            return value, code_type_for(value)
        except InvalidHolderCode as exc:
            raise InvalidHolderCode(exc.detail, field=field) from exc
    kind = HolderCodeType(code_type)
    ok = is_valid_resident_id(value) if kind is HolderCodeType.RESIDENT_ID else is_valid_uscc(value)
    if not ok:
        what = "resident ID (GB 11643)" if kind is HolderCodeType.RESIDENT_ID else "USCC (GB 32100)"
        raise InvalidHolderCode(f"{_mask(value)} is not a valid {what}: check the check character",
                                field=field)
    return value, kind


def _mask(code: str) -> str:
    return mask_holder_code(code) if isinstance(code, str) else "?"


def mask_holder_code(code: str) -> str:
    """Public form of a holder code: first 4 and last 2 characters, the rest ``*``."""
    if len(code) <= 6:
        return "*" * len(code)
    return code[:4] + "*" * (len(code) - 6) + code[-2:]


def mask_name(name: str) -> str:
    """Public form of a person's name: keep the first character (the surname)."""
    if len(name) <= 1:
        return name
    if len(name) > 8:  # organisations: keep the recognisable start and end
        return name[:4] + "*" * 2 + name[-2:]
    return name[0] + "*" * (len(name) - 1)
