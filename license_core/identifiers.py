"""GB/T 36904 electronic license identifiers.

``1.2.156.3005.2.<type code (21)>.<issuer code>.<serial>.<version (3 digits)>.<check>`` where the
check character is ISO/IEC 7064 MOD 37,36 over type‖issuer‖serial‖version with the dots removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stdnum.iso7064 import mod_37_36

from .errors import InvalidIdentifier
from .holder_codes import is_valid_uscc

__all__ = ["ROOT_ARC", "LicenseIdentifier", "check_character", "validate_type_code",
           "validate_issuer_code"]

ROOT_ARC = "1.2.156.3005.2"
_TYPE_CODE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}[0-9]{3}$")
_AREA_CODE = re.compile(r"^[0-9]{6}$")
_SERIAL = re.compile(r"^[0-9A-Z]{1,32}$")
_VERSION = re.compile(r"^[0-9]{3}$")


def check_character(type_code: str, issuer_code: str, serial: str, version: str) -> str:
    """The MOD 37,36 check character over the four segments."""
    return mod_37_36.calc_check_digit(f"{type_code}{issuer_code}{serial}{version}")


def validate_type_code(code: str, *, field: str = "type_code") -> str:
    """A license type code: the defining body's 18-char USCC plus three digits."""
    if not isinstance(code, str) or not _TYPE_CODE.match(code) or not is_valid_uscc(code[:18]):
        raise InvalidIdentifier(
            f"{code!r} is not a license type code (18-character USCC of the defining body "
            "followed by 3 digits)", field=field)
    return code


def validate_issuer_code(code: str, *, field: str = "issuer_code") -> str:
    """An issuer code: an 18-char USCC, or a 6-digit administrative area code."""
    if isinstance(code, str) and (_AREA_CODE.match(code) or is_valid_uscc(code)):
        return code
    raise InvalidIdentifier(
        f"{code!r} is not an issuer code (a valid 18-character USCC or a 6-digit area code)",
        field=field)


@dataclass(frozen=True, slots=True)
class LicenseIdentifier:
    """One version of one e-license, as identified by GB/T 36904."""

    type_code: str
    issuer_code: str
    serial: str
    version: int

    def __post_init__(self) -> None:
        validate_type_code(self.type_code)
        validate_issuer_code(self.issuer_code)
        if not _SERIAL.match(self.serial):
            raise InvalidIdentifier(f"serial {self.serial!r} must be 1-32 digits or capitals",
                                    field="serial")
        if not 1 <= self.version <= 999:
            raise InvalidIdentifier("version must be between 001 and 999", field="version")

    @property
    def version_text(self) -> str:
        return f"{self.version:03d}"

    @property
    def check(self) -> str:
        return check_character(self.type_code, self.issuer_code, self.serial, self.version_text)

    def __str__(self) -> str:
        return (f"{ROOT_ARC}.{self.type_code}.{self.issuer_code}.{self.serial}."
                f"{self.version_text}.{self.check}")

    def with_version(self, version: int) -> "LicenseIdentifier":
        return LicenseIdentifier(self.type_code, self.issuer_code, self.serial, version)

    @classmethod
    def parse(cls, text: str) -> "LicenseIdentifier":
        """Parse and validate a full identifier.

        Raises:
            InvalidIdentifier: wrong shape, segment or check character.
        """
        if not isinstance(text, str) or len(text) > 128:
            raise InvalidIdentifier("not a license identifier", field="id")
        prefix = ROOT_ARC + "."
        if not text.startswith(prefix):
            raise InvalidIdentifier(f"a license identifier starts with {prefix}", field="id")
        parts = text[len(prefix):].split(".")
        if len(parts) != 5:
            raise InvalidIdentifier(
                "a license identifier has five segments after the root: "
                "type.issuer.serial.version.check", field="id")
        type_code, issuer_code, serial, version, check = parts
        if not _VERSION.match(version):
            raise InvalidIdentifier("the version segment is 3 digits", field="id")
        try:
            ident = cls(type_code, issuer_code, serial, int(version))
        except InvalidIdentifier as exc:
            raise InvalidIdentifier(exc.detail, field="id") from exc
        if ident.check != check:
            raise InvalidIdentifier(
                f"check character {check!r} is wrong for this identifier (MOD 37,36)", field="id")
        return ident
