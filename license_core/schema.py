"""License type field schemas and validation of license data against them."""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Mapping, Sequence

from .errors import ValidationFailed

__all__ = ["FieldType", "FieldSpec", "SharingLevel", "HolderKind", "validate_license_data",
           "FIELD_KEY", "MAX_STRING", "MAX_TEXT"]

FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
MAX_STRING = 200
MAX_TEXT = 4000


class FieldType(str, enum.Enum):
    STRING = "string"
    TEXT = "text"
    DATE = "date"
    INTEGER = "integer"
    NUMBER = "number"
    ENUM = "enum"
    BOOLEAN = "boolean"


class SharingLevel(str, enum.Enum):
    UNCONDITIONAL = "unconditional"
    CONDITIONAL = "conditional"
    NONE = "none"


class HolderKind(str, enum.Enum):
    PERSON = "person"
    ORGANIZATION = "organization"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    key: str
    label: str
    type: FieldType
    required: bool = False
    public: bool = True
    choices: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not FIELD_KEY.match(self.key):
            raise ValidationFailed(f"field key {self.key!r} must be snake_case ASCII",
                                   field="fields.key")
        if self.type is FieldType.ENUM and not self.choices:
            raise ValidationFailed(f"enum field {self.key!r} needs choices", field="fields.choices")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "FieldSpec":
        try:
            return cls(key=raw["key"], label=str(raw["label"]), type=FieldType(raw["type"]),
                       required=bool(raw.get("required", False)),
                       public=bool(raw.get("public", True)),
                       choices=tuple(str(c) for c in raw.get("choices") or ()))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValidationFailed(f"bad field definition {raw!r}: {exc}",
                                   field="fields") from exc

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "label": self.label, "type": self.type.value,
                               "required": self.required, "public": self.public}
        if self.choices:
            out["choices"] = list(self.choices)
        return out


def _check_value(spec: FieldSpec, value: Any) -> Any:
    where = f"data.{spec.key}"
    kind = spec.type
    if kind in (FieldType.STRING, FieldType.TEXT):
        limit = MAX_STRING if kind is FieldType.STRING else MAX_TEXT
        if not isinstance(value, str) or not value.strip():
            raise ValidationFailed(f"{spec.label} must be non-empty text", field=where)
        if len(value) > limit:
            raise ValidationFailed(f"{spec.label} is longer than {limit} characters", field=where)
        if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
            raise ValidationFailed(f"{spec.label} contains control characters", field=where)
        return value
    if kind is FieldType.DATE:
        if not isinstance(value, str):
            raise ValidationFailed(f"{spec.label} must be an ISO date YYYY-MM-DD", field=where)
        try:
            return date.fromisoformat(value).isoformat() if len(value) == 10 else _bad_date(spec)
        except ValueError:
            raise ValidationFailed(f"{spec.label} must be an ISO date YYYY-MM-DD",
                                   field=where) from None
    if kind is FieldType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 10**15:
            raise ValidationFailed(f"{spec.label} must be a whole number", field=where)
        return value
    if kind is FieldType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not math.isfinite(value)) or abs(value) > 1e15:
            raise ValidationFailed(f"{spec.label} must be a number", field=where)
        return value
    if kind is FieldType.ENUM:
        if value not in spec.choices:
            raise ValidationFailed(f"{spec.label} must be one of {', '.join(spec.choices)}",
                                   field=where)
        return value
    if kind is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise ValidationFailed(f"{spec.label} must be true or false", field=where)
        return value
    raise AssertionError(kind)  # pragma: no cover


def _bad_date(spec: FieldSpec) -> str:
    raise ValueError(spec.key)


def validate_license_data(fields: Sequence[FieldSpec], data: Any, *,
                          partial: bool = False) -> dict[str, Any]:
    """Check license data against a type's fields; return the cleaned data.

    With ``partial`` (amendments) required fields may be absent.

    Raises:
        ValidationFailed: the first violation, ``field`` naming ``data.<key>``.
    """
    if not isinstance(data, Mapping):
        raise ValidationFailed("data must be an object", field="data")
    by_key = {f.key: f for f in fields}
    for key in data:
        if key not in by_key:
            raise ValidationFailed(f"unknown field {key!r} for this license type",
                                   field=f"data.{key}")
    clean: dict[str, Any] = {}
    for spec in fields:
        if spec.key not in data or data[spec.key] is None:
            if spec.required and not partial:
                raise ValidationFailed(f"{spec.label} ({spec.key}) is required",
                                       field=f"data.{spec.key}")
            continue
        clean[spec.key] = _check_value(spec, data[spec.key])
    return clean
