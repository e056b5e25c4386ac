"""Public certificate and detached-CMS verification (一证通用)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ..deps import ContainerDep
from ..services import certs as service

router = APIRouter(tags=["certificates"])


class CertificateVerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    certificate: str = Field(description="one X.509 certificate, PEM (or base64 DER)")


class CmsVerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content_b64: str = Field(description="the signed content, base64")
    signature_b64: str = Field(description="the detached CMS SignedData (DER), base64")


@router.post("/v1/certs/verify", summary="Verify a certificate: chain, status, holder (masked)")
def verify_certificate(body: CertificateVerifyIn, container: ContainerDep) -> dict[str, Any]:
    report = service.verify_certificate_pem(container, body.certificate)
    return service.public_certificate_view(report)


@router.post("/v1/verify/cms", summary="Verify a detached CMS signature: signer, integrity, trust")
def verify_cms(body: CmsVerifyIn, container: ContainerDep) -> dict[str, Any]:
    return service.verify_cms_request(container, content_b64=body.content_b64,
                                      signature_b64=body.signature_b64)
