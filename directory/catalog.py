"""The license information directory: issuers and license types, their queries and JSON I/O.

The catalog file format (``elicense-catalog/1``) round-trips exactly: ``export`` of an imported
file gives the same document. ``import`` validates the whole file first and changes nothing
when any part of it is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from license_core.errors import InvalidCatalog, LicenseError, UnknownIssuer, UnknownLicenseType
from license_core.holder_codes import is_valid_uscc
from license_core.identifiers import validate_type_code
from license_core.schema import FieldSpec, HolderKind, SharingLevel

from .models import Issuer, LicenseType, LicenseTypeIssuer

__all__ = ["CATALOG_FORMAT", "IssuerSpec", "LicenseTypeSpec", "CatalogDocument", "parse_catalog",
           "load_demo_catalog", "import_catalog", "export_catalog", "list_issuers", "get_issuer",
           "list_license_types", "get_license_type", "upsert_issuer", "upsert_license_type",
           "license_type_to_dict", "issuer_to_dict", "field_specs"]

CATALOG_FORMAT = "elicense-catalog/1"
_LEVELS = {"national", "provincial", "municipal", "district"}


def _at(where: str, name: str) -> str:
    """The field path of ``name`` inside ``where`` (empty ``where``: a top-level API body)."""
    return f"{where}.{name}" if where else name


@dataclass(frozen=True)
class IssuerSpec:
    code: str
    name: str
    area_code: str
    level: str = "municipal"

    @classmethod
    def from_dict(cls, raw: Any, *, where: str = "issuer") -> "IssuerSpec":
        if not isinstance(raw, Mapping):
            raise InvalidCatalog(f"{where} must be an object", field=where or None)
        code = raw.get("code")
        if not is_valid_uscc(code):
            raise InvalidCatalog(f"{where}.code {code!r} is not a valid USCC (GB 32100)",
                                 field=_at(where, "code"))
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidCatalog(f"{where}.name must be 1-200 characters", field=_at(where, "name"))
        area = raw.get("area_code", code[2:8])
        if not isinstance(area, str) or len(area) != 6 or not area.isdigit():
            raise InvalidCatalog(f"{where}.area_code must be 6 digits", field=_at(where, "area_code"))
        level = raw.get("level", "municipal")
        if level not in _LEVELS:
            raise InvalidCatalog(f"{where}.level must be one of {sorted(_LEVELS)}",
                                 field=_at(where, "level"))
        return cls(code=code, name=name, area_code=area, level=level)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "area_code": self.area_code,
                "level": self.level}


@dataclass(frozen=True)
class LicenseTypeSpec:
    code: str
    name: str
    name_en: str | None
    defining_body_code: str
    defining_body_name: str
    issuer_codes: tuple[str, ...]
    holder_kind: HolderKind
    validity_years: int | None
    issuing_level: str
    sharing_level: SharingLevel
    service_items: tuple[tuple[str, str], ...]
    fields: tuple[FieldSpec, ...]

    @classmethod
    def from_dict(cls, raw: Any, *, where: str = "license_type") -> "LicenseTypeSpec":
        if not isinstance(raw, Mapping):
            raise InvalidCatalog(f"{where} must be an object", field=where or None)
        try:
            code = validate_type_code(raw.get("code"), field=_at(where, "code"))
        except LicenseError as exc:
            raise InvalidCatalog(exc.detail, field=_at(where, "code")) from exc
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidCatalog(f"{where}.name must be 1-200 characters", field=_at(where, "name"))
        body = raw.get("defining_body")
        if not isinstance(body, Mapping) or body.get("code") != code[:18] or \
                not isinstance(body.get("name"), str) or not body["name"].strip():
            raise InvalidCatalog(
                f"{where}.defining_body must be {{code, name}} with code = the type code's first "
                "18 characters", field=_at(where, "defining_body"))
        issuers = raw.get("issuer_codes")
        if not isinstance(issuers, list) or not issuers or \
                not all(isinstance(c, str) for c in issuers) or len(set(issuers)) != len(issuers):
            raise InvalidCatalog(f"{where}.issuer_codes must be a non-empty list of distinct codes",
                                 field=_at(where, "issuer_codes"))
        try:
            holder_kind = HolderKind(raw.get("holder_kind"))
            sharing = SharingLevel(raw.get("sharing_level"))
        except ValueError as exc:
            raise InvalidCatalog(f"{where}: {exc}", field=where or None) from exc
        validity = raw.get("validity_years")
        if validity is not None and (isinstance(validity, bool) or not isinstance(validity, int)
                                     or not 1 <= validity <= 100):
            raise InvalidCatalog(f"{where}.validity_years must be null or 1-100",
                                 field=_at(where, "validity_years"))
        level = raw.get("issuing_level", "municipal")
        if level not in _LEVELS:
            raise InvalidCatalog(f"{where}.issuing_level must be one of {sorted(_LEVELS)}",
                                 field=_at(where, "issuing_level"))
        items_raw = raw.get("service_items", [])
        if not isinstance(items_raw, list) or not all(
                isinstance(i, Mapping) and isinstance(i.get("code"), str) and
                isinstance(i.get("name"), str) for i in items_raw):
            raise InvalidCatalog(f"{where}.service_items must be a list of {{code, name}}",
                                 field=_at(where, "service_items"))
        fields_raw = raw.get("fields")
        if not isinstance(fields_raw, list) or not fields_raw:
            raise InvalidCatalog(f"{where}.fields must be a non-empty list",
                                 field=_at(where, "fields"))
        try:
            fields = tuple(FieldSpec.from_dict(f) if isinstance(f, Mapping) else
                           FieldSpec.from_dict({}) for f in fields_raw)
        except LicenseError as exc:
            raise InvalidCatalog(f"{where}: {exc.detail}", field=_at(where, "fields")) from exc
        keys = [f.key for f in fields]
        if len(set(keys)) != len(keys):
            raise InvalidCatalog(f"{where}: field keys must be unique", field=_at(where, "fields"))
        name_en = raw.get("name_en")
        if name_en is not None and not isinstance(name_en, str):
            raise InvalidCatalog(f"{where}.name_en must be text", field=_at(where, "name_en"))
        return cls(code=code, name=name, name_en=name_en, defining_body_code=body["code"],
                   defining_body_name=body["name"], issuer_codes=tuple(issuers),
                   holder_kind=holder_kind, validity_years=validity, issuing_level=level,
                   sharing_level=sharing,
                   service_items=tuple((i["code"], i["name"]) for i in items_raw),
                   fields=fields)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code, "name": self.name,
            "defining_body": {"code": self.defining_body_code, "name": self.defining_body_name},
            "issuer_codes": list(self.issuer_codes), "holder_kind": self.holder_kind.value,
            "validity_years": self.validity_years, "issuing_level": self.issuing_level,
            "sharing_level": self.sharing_level.value,
            "service_items": [{"code": c, "name": n} for c, n in self.service_items],
            "fields": [f.to_dict() for f in self.fields],
        }
        if self.name_en is not None:
            out["name_en"] = self.name_en
        return out


@dataclass(frozen=True)
class CatalogDocument:
    issuers: tuple[IssuerSpec, ...]
    license_types: tuple[LicenseTypeSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"format": CATALOG_FORMAT, "issuers": [i.to_dict() for i in self.issuers],
                "license_types": [t.to_dict() for t in self.license_types]}


def parse_catalog(raw: bytes | str | Mapping[str, Any], *,
                  known_issuers: Iterable[str] = ()) -> CatalogDocument:
    """Parse and validate a whole catalog document.

    Raises:
        InvalidCatalog: not JSON, wrong format marker, or any invalid entry (field names it).
    """
    if isinstance(raw, (bytes, str)):
        try:
            raw = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidCatalog(f"catalog file is not valid JSON: {exc}") from exc
    if not isinstance(raw, Mapping) or raw.get("format") != CATALOG_FORMAT:
        raise InvalidCatalog(f'catalog file must be an object with "format": "{CATALOG_FORMAT}"',
                             field="format")
    issuers_raw = raw.get("issuers", [])
    types_raw = raw.get("license_types", [])
    if not isinstance(issuers_raw, list) or not isinstance(types_raw, list):
        raise InvalidCatalog("issuers and license_types must be lists")
    issuers = tuple(IssuerSpec.from_dict(r, where=f"issuers[{i}]")
                    for i, r in enumerate(issuers_raw))
    types = tuple(LicenseTypeSpec.from_dict(r, where=f"license_types[{i}]")
                  for i, r in enumerate(types_raw))
    issuer_codes = [i.code for i in issuers]
    if len(set(issuer_codes)) != len(issuer_codes):
        raise InvalidCatalog("issuer codes must be unique", field="issuers")
    type_codes = [t.code for t in types]
    if len(set(type_codes)) != len(type_codes):
        raise InvalidCatalog("license type codes must be unique", field="license_types")
    known = set(issuer_codes) | set(known_issuers)
    for i, t in enumerate(types):
        for code in t.issuer_codes:
            if code not in known:
                raise InvalidCatalog(f"license_types[{i}] names issuer {code}, which is neither "
                                     "in this file nor in the directory",
                                     field=f"license_types[{i}].issuer_codes")
    return CatalogDocument(issuers=issuers, license_types=types)


def load_demo_catalog() -> CatalogDocument:
    raw = (resources.files("directory") / "demo_catalog.json").read_bytes()
    return parse_catalog(raw)


# --- queries ---------------------------------------------------------------------------------

def list_issuers(session: Session) -> list[Issuer]:
    return list(session.scalars(select(Issuer).order_by(Issuer.code)))


def get_issuer(session: Session, *, code: str) -> Issuer:
    issuer = session.get(Issuer, code)
    if issuer is None:
        raise UnknownIssuer(f"no issuer with code {code}", field="issuer_code")
    return issuer


def list_license_types(session: Session) -> list[LicenseType]:
    return list(session.scalars(select(LicenseType).order_by(LicenseType.code)))


def get_license_type(session: Session, *, code: str) -> LicenseType:
    row = session.get(LicenseType, code) if isinstance(code, str) and len(code) <= 21 else None
    if row is None:
        raise UnknownLicenseType(f"no license type with code {code!r}", field="type_code")
    return row


def field_specs(row: LicenseType) -> tuple[FieldSpec, ...]:
    return tuple(FieldSpec.from_dict(f) for f in row.fields)


def upsert_issuer(session: Session, *, spec: IssuerSpec, at: datetime) -> Issuer:
    row = session.get(Issuer, spec.code)
    if row is None:
        row = Issuer(code=spec.code, created_at=at)
        session.add(row)
    row.name, row.area_code, row.level = spec.name, spec.area_code, spec.level
    session.flush()
    return row


def upsert_license_type(session: Session, *, spec: LicenseTypeSpec, at: datetime) -> LicenseType:
    """Insert or replace a license type. Raises UnknownIssuer for an issuer not in the directory."""
    for code in spec.issuer_codes:
        if session.get(Issuer, code) is None:
            raise UnknownIssuer(f"issuer {code} is not in the directory", field="issuer_codes")
    row = session.get(LicenseType, spec.code)
    if row is None:
        row = LicenseType(code=spec.code, created_at=at)
        session.add(row)
    row.name, row.name_en = spec.name, spec.name_en
    row.defining_body_code, row.defining_body_name = spec.defining_body_code, spec.defining_body_name
    row.holder_kind, row.validity_years = spec.holder_kind.value, spec.validity_years
    row.issuing_level, row.sharing_level = spec.issuing_level, spec.sharing_level.value
    row.service_items = [{"code": c, "name": n} for c, n in spec.service_items]
    row.fields = [f.to_dict() for f in spec.fields]
    row.updated_at = at
    row.issuer_links = [LicenseTypeIssuer(issuer_code=c, position=i)
                        for i, c in enumerate(spec.issuer_codes)]
    session.flush()
    return row


def import_catalog(session: Session, *, document: CatalogDocument, at: datetime) -> dict[str, int]:
    """Upsert a parsed catalog in the caller's transaction."""
    for issuer in document.issuers:
        upsert_issuer(session, spec=issuer, at=at)
    for license_type in document.license_types:
        upsert_license_type(session, spec=license_type, at=at)
    return {"issuers": len(document.issuers), "license_types": len(document.license_types)}


def issuer_to_dict(row: Issuer) -> dict[str, Any]:
    return {"code": row.code, "name": row.name, "area_code": row.area_code, "level": row.level}


def license_type_to_dict(row: LicenseType) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": row.code, "name": row.name,
        "defining_body": {"code": row.defining_body_code, "name": row.defining_body_name},
        "issuer_codes": row.issuer_codes, "holder_kind": row.holder_kind,
        "validity_years": row.validity_years, "issuing_level": row.issuing_level,
        "sharing_level": row.sharing_level, "service_items": list(row.service_items),
        "fields": list(row.fields),
    }
    if row.name_en is not None:
        out["name_en"] = row.name_en
    return out


def export_catalog(session: Session) -> dict[str, Any]:
    return {"format": CATALOG_FORMAT,
            "issuers": [issuer_to_dict(i) for i in list_issuers(session)],
            "license_types": [license_type_to_dict(t) for t in list_license_types(session)]}

