"""The license information directory: public reads, admin maintenance."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from directory import catalog as q
from ..deps import AdminDep, ContainerDep, SessionDep
from ..schemas import IssuerIn, IssuerOut, LicenseTypeIn, LicenseTypeOut, ListOut
from ..services import catalog as service

router = APIRouter(tags=["directory"])


@router.get("/v1/issuers", response_model=ListOut, summary="Issuing departments")
def list_issuers(session: SessionDep) -> dict[str, Any]:
    data = [q.issuer_to_dict(i) for i in q.list_issuers(session)]
    return {"data": data, "count": len(data)}


@router.post("/v1/issuers", response_model=IssuerOut, status_code=201,
             summary="Add or replace an issuing department (admin)")
def create_issuer(body: IssuerIn, session: SessionDep, container: ContainerDep,
                  principal: AdminDep) -> dict[str, Any]:
    raw = body.model_dump(exclude_none=True)
    return service.create_or_replace_issuer(session, raw=raw, actor=principal.actor,
                                            clock=container.clock)


@router.get("/v1/license-types", response_model=ListOut, summary="License types")
def list_license_types(session: SessionDep) -> dict[str, Any]:
    data = [q.license_type_to_dict(t) for t in q.list_license_types(session)]
    return {"data": data, "count": len(data)}


@router.get("/v1/license-types/{code}", response_model=LicenseTypeOut,
            summary="One license type with its field schema")
def get_license_type(code: str, session: SessionDep) -> dict[str, Any]:
    return q.license_type_to_dict(q.get_license_type(session, code=code))


@router.post("/v1/license-types", response_model=LicenseTypeOut, status_code=201,
             summary="Add a license type (admin)")
def create_license_type(body: LicenseTypeIn, session: SessionDep, container: ContainerDep,
                        principal: AdminDep) -> dict[str, Any]:
    return service.create_or_replace_license_type(
        session, raw=body.model_dump(exclude_none=True), actor=principal.actor,
        clock=container.clock)


@router.put("/v1/license-types/{code}", response_model=LicenseTypeOut,
            summary="Replace a license type (admin)")
def replace_license_type(code: str, session: SessionDep, container: ContainerDep,
                         principal: AdminDep, body: LicenseTypeIn = Body(...)) -> dict[str, Any]:
    return service.create_or_replace_license_type(
        session, raw=body.model_dump(exclude_none=True), actor=principal.actor,
        clock=container.clock, expect_code=code)
