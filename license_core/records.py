"""The license record embedded in an e-license PDF (``license.json``) and rebuilt from the
registry at verification: one function, so both sides agree byte for byte (canonical JSON)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from .holder_codes import mask_holder_code

__all__ = ["license_record", "co_holder_entry"]


def co_holder_entry(*, code: str, name: str, code_type: str, role: str) -> dict[str, Any]:
    return {"id": mask_holder_code(code), "name": name, "code_type": code_type, "role": role}


def license_record(*, license_id: str, version: int, type_code: str, type_name: str,
                   issuer_code: str, issuer_name: str, holder_code: str, holder_name: str,
                   holder_code_type: str, co_holders: Sequence[Mapping[str, Any]],
                   license_number: str, data: Mapping[str, Any], valid_from: date,
                   valid_to: date | None, issued_on: date) -> dict[str, Any]:
    """The authoritative record; holder codes appear masked only (the PDF travels)."""
    return {
        "id": license_id,
        "version": f"{version:03d}",
        "type_code": type_code,
        "type_name": type_name,
        "issuer_code": issuer_code,
        "issuer_name": issuer_name,
        "holder": {"id": mask_holder_code(holder_code), "name": holder_name,
                   "code_type": holder_code_type},
        "co_holders": [co_holder_entry(code=c["id"], name=c["name"], code_type=c["code_type"],
                                       role=c.get("role", "co_holder")) for c in co_holders],
        "license_number": license_number,
        "data": dict(data),
        "valid_from": valid_from.isoformat(),
        "valid_to": valid_to.isoformat() if valid_to else None,
        "issued_on": issued_on.isoformat(),
    }
