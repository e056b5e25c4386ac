"""Request and response schemas of the HTTP API (one per role and use)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FieldSchema", "ServiceItem", "DefiningBody", "LicenseTypeIn", "LicenseTypeOut",
           "IssuerIn", "IssuerOut", "ListOut"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldSchema(BaseModel):
    key: str
    label: str
    type: Literal["string", "text", "date", "integer", "number", "enum", "boolean"]
    required: bool = False
    public: bool = True
    choices: list[str] | None = None


class ServiceItem(BaseModel):
    code: str
    name: str


class DefiningBody(BaseModel):
    code: str
    name: str


class LicenseTypeIn(_In):
    code: str = Field(description="defining body USCC (18) + 3 digits")
    name: str
    name_en: str | None = None
    defining_body: DefiningBody
    issuer_codes: list[str]
    holder_kind: Literal["person", "organization"]
    validity_years: int | None = None
    issuing_level: Literal["national", "provincial", "municipal", "district"] = "municipal"
    sharing_level: Literal["unconditional", "conditional", "none"]
    service_items: list[ServiceItem] = []
    fields: list[FieldSchema]


class LicenseTypeOut(BaseModel):
    code: str
    name: str
    name_en: str | None = None
    defining_body: DefiningBody
    issuer_codes: list[str]
    holder_kind: str
    validity_years: int | None
    issuing_level: str
    sharing_level: str
    service_items: list[ServiceItem]
    fields: list[FieldSchema]


class IssuerIn(_In):
    code: str = Field(description="18-character USCC of the issuing department")
    name: str
    area_code: str | None = None
    level: Literal["national", "provincial", "municipal", "district"] = "municipal"


class IssuerOut(BaseModel):
    code: str
    name: str
    area_code: str
    level: str


class ListOut(BaseModel):
    data: list[Any]
    count: int
