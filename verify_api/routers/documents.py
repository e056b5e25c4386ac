"""E-official documents (电子公文): seal any PDF with the department's key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from license_core.errors import Forbidden, MalformedDocument

from ..deps import ContainerDep, PrincipalDep
from ..services.documents import sign_document
from .uploads import read_pdf_upload

router = APIRouter(tags=["documents"])


@router.post("/v1/documents/sign", response_class=Response,
             responses={200: {"content": {"application/pdf": {}}}},
             openapi_extra={"requestBody": {"content": {
                 "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}}}}}}},
             summary="Seal a PDF as an approval signature (issuer); signing again countersigns")
async def sign(request: Request, principal: PrincipalDep, container: ContainerDep) -> Response:
    if principal.role != "issuer" or not principal.issuer_code:
        raise Forbidden("sealing documents needs an issuer key bound to a department")
    pdf = await read_pdf_upload(request)
    if not pdf.startswith(b"%PDF"):
        raise MalformedDocument("the upload is not a PDF", field="file")
    from starlette.concurrency import run_in_threadpool
    signed = await run_in_threadpool(sign_document, container, pdf,
                                     issuer_code=principal.issuer_code, actor=principal.actor)
    return Response(signed, media_type="application/pdf")
