"""Issuance and lifecycle of e-licenses (issuer role: own department only)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from license_core.errors import Forbidden, ValidationFailed
from license_core.lifecycle import Action

from ..deps import ContainerDep, PrincipalDep
from ..schemas import AmendIn, LicenseIn, LicenseOut, ListOut, TransitionIn
from ..services.licenses import MintRequest, license_service

router = APIRouter(tags=["licenses"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


def _issuer(principal: PrincipalDep) -> str:
    if principal.role != "issuer" or not principal.issuer_code:
        raise Forbidden("minting needs an issuer key bound to a department")
    return principal.issuer_code


@router.post("/v1/licenses", status_code=201, response_model=LicenseOut,
             summary="Mint an e-license (issuer); honours Idempotency-Key")
def mint(body: LicenseIn, principal: PrincipalDep, container: ContainerDep,
         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    issuer_code = _issuer(principal)
    request = MintRequest.from_body(body.model_dump(mode="json", exclude_none=True))
    result = license_service(container).mint(
        request, issuer_code=issuer_code, actor=principal.actor,
        idempotency=(principal.subject, idempotency_key) if idempotency_key else None)
    return JSONResponse(result.license, status_code=201 if result.created else 200,
                        headers={"Location": f"/v1/licenses/{result.license['id']}"})


@router.post("/v1/licenses/convert", status_code=201, response_model=LicenseOut,
             summary="Mint an e-license from a scanned paper certificate (issuer)")
def convert(principal: PrincipalDep, container: ContainerDep,
            scan: Annotated[UploadFile, File(description="JPEG, PNG or PDF scan")],
            meta: Annotated[str, Form(description="JSON: the same body as POST /v1/licenses")],
            idempotency_key: IdempotencyKey = None) -> JSONResponse:
    issuer_code = _issuer(principal)
    try:
        body = json.loads(meta)
    except ValueError:
        raise ValidationFailed("meta must be JSON", field="meta") from None
    scan_bytes = scan.file.read()
    if not scan_bytes:
        raise ValidationFailed("the scan file is empty", field="scan")
    request = MintRequest.from_body(body, scan=scan_bytes)
    result = license_service(container).mint(
        request, issuer_code=issuer_code, actor=principal.actor,
        idempotency=(principal.subject, idempotency_key) if idempotency_key else None)
    return JSONResponse(result.license, status_code=201 if result.created else 200)


@router.get("/v1/licenses", response_model=ListOut,
            summary="List licenses (issuer: own department; admin: all)")
def list_licenses(principal: PrincipalDep, container: ContainerDep,
                  type_code: str | None = None, holder_id: str | None = None,
                  status: str | None = None,
                  page: Annotated[int, Query(ge=1, le=100000)] = 1) -> dict[str, Any]:
    return license_service(container).list(principal=principal, type_code=type_code,
                                           holder_id=holder_id, status=status, page=page)


@router.get("/v1/licenses/{license_id}", response_model=LicenseOut,
            summary="One license version (issuer: own)")
def get_license(license_id: str, principal: PrincipalDep, container: ContainerDep) -> dict:
    return license_service(container).get(license_id, principal=principal)


@router.get("/v1/licenses/{license_id}/pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}},
            summary="The sealed PDF of a license version (issuer: own)")
def get_pdf(license_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    pdf = license_service(container).pdf(license_id, principal=principal)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{license_id}.pdf"'})


def _transition(action: Action):  # type: ignore[no-untyped-def]
    def handler(license_id: str, body: TransitionIn, principal: PrincipalDep,
                container: ContainerDep) -> dict:
        return license_service(container).transition(license_id, action, reason=body.reason,
                                                     note=body.note, principal=principal)
    handler.__name__ = f"{action.value}_license"
    return handler


for _action in (Action.REVOKE, Action.SUSPEND, Action.RESUME):
    router.add_api_route(f"/v1/licenses/{{license_id}}/{_action.value}", _transition(_action),
                         methods=["POST"], response_model=LicenseOut,
                         summary=f"{_action.value.capitalize()} a license (issuer: own)")


@router.post("/v1/licenses/{license_id}/amend", status_code=201, response_model=LicenseOut,
             summary="Amend: a new version with changed data; the old becomes superseded")
def amend(license_id: str, body: AmendIn, principal: PrincipalDep,
          container: ContainerDep) -> dict:
    return license_service(container).amend(license_id, changes=body.data, reason=body.reason,
                                            note=body.note, principal=principal)
