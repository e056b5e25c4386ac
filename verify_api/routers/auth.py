"""一证通用 certificate login: challenge, login, and the logged-in holder."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from ..deps import ContainerDep, Principal, require_role
from ..services import holder_auth as service

router = APIRouter(tags=["auth"])

HolderDep = Annotated[Principal, Depends(require_role("holder"))]


class CertLoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    certificate: str = Field(description="the 一证通用 certificate, PEM")
    nonce: str = Field(description="the nonce from POST /v1/auth/challenge, as sent")
    signature_b64: str = Field(
        description="base64 signature over the UTF-8 bytes of the nonce: ECDSA-SHA256 (DER or "
                    "raw r||s), RSA PKCS#1 v1.5 SHA-256, or Ed25519")


@router.post("/v1/auth/challenge", status_code=201,
             summary="A login nonce (valid 5 minutes, single use)")
def challenge(container: ContainerDep) -> dict[str, Any]:
    return service.create_challenge(container)


@router.post("/v1/auth/cert-login", summary="Log in with a certificate and a signed nonce")
def cert_login(body: CertLoginIn, container: ContainerDep) -> dict[str, Any]:
    return service.cert_login(container, certificate_pem=body.certificate, nonce=body.nonce,
                              signature_b64=body.signature_b64)


@router.get("/v1/me", summary="The logged-in holder (holder token)")
def me(principal: HolderDep, container: ContainerDep) -> dict[str, Any]:
    return service.holder_profile(container, principal)


@router.get("/v1/me/licenses", summary="The holder's licenses (holder token)")
def my_licenses(principal: HolderDep, container: ContainerDep) -> dict[str, Any]:
    from ..services.me import my_licenses as list_mine
    return list_mine(container, principal)


@router.get("/v1/me/usage", summary="Usage records (用证记录): who used my licenses, when, why")
def my_usage(principal: HolderDep, container: ContainerDep) -> dict[str, Any]:
    from ..services.me import my_usage as usage
    return usage(container, principal)
