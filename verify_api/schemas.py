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


class HolderIn(_In):
    id: str = Field(description="resident ID (GB 11643) or USCC (GB 32100)")
    name: str


class CoHolderIn(_In):
    id: str
    name: str
    role: Literal["co_owner", "guardian", "co_holder", "legal_representative"] = "co_holder"
    code_type: Literal["111", "001"] | None = None


class LicenseIn(_In):
    type_code: str
    holder: HolderIn
    co_holders: list[CoHolderIn] = []
    license_number: str | None = None
    data: dict[str, Any] = {}
    valid_from: str | None = Field(default=None, description="ISO date")
    valid_to: str | None = Field(default=None, description="ISO date")


class HolderOut(BaseModel):
    id: str
    name: str
    code_type: str


class CoHolderOut(HolderOut):
    role: str


class LicenseOut(BaseModel):
    id: str
    version: str
    status: Literal["valid", "suspended", "revoked", "expired", "superseded"]
    type_code: str
    issuer_code: str
    holder: HolderOut
    co_holders: list[CoHolderOut]
    license_number: str
    data: dict[str, Any]
    valid_from: str
    valid_to: str | None
    predecessor_id: str | None
    successor_id: str | None
    status_reason: str | None = None
    issued_at: str
    pdf_url: str


class TransitionIn(_In):
    reason: str = Field(description="revoke: cancelled|revoked|issued_in_error; suspend: "
                        "investigation|holder_request|other; resume: "
                        "investigation_closed|holder_request|other")
    note: str | None = Field(default=None, max_length=500)


class AmendIn(_In):
    data: dict[str, Any]
    reason: str = Field(description="correction|change|renewal|other")
    note: str | None = Field(default=None, max_length=500)
