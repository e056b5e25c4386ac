"""Public PDF verification (SPEC §4 ``POST /v1/verify/pdf``, report of §6)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..deps import ContainerDep
from ..services.verification import pdf_verifier, public_report
from .uploads import read_pdf_upload

router = APIRouter(tags=["verification"])


@router.post(
    "/v1/verify/pdf",
    summary="Verify a sealed PDF (e-license or e-official document): the SPEC §6 report",
    description="Body `application/pdf`, or multipart field `file`. Every document gets a "
                "report (200), a hostile or broken one TOTAL_FAILED / FORMAT_FAILURE; "
                "holder codes are masked, certificate subjects included.",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/pdf": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}}, "required": ["file"]}}}}},
)
async def verify_pdf(request: Request, container: ContainerDep) -> dict[str, Any]:
    pdf = await read_pdf_upload(request)
    # fact gathering blocks on a worker process: keep the event loop free
    report = await run_in_threadpool(pdf_verifier(container).verify_pdf, pdf)
    return public_report(report)
