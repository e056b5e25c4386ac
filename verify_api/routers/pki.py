"""The public PKI endpoints: RFC 3161 TSA, RFC 6960 OCSP, CRLs and CA certificates."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from cryptography.hazmat.primitives import serialization

from license_core.errors import NotFound, UploadTooLarge

from ..deps import ContainerDep
from ..platform.pki import platform_pki

router = APIRouter(tags=["pki"])
_MAX_PKI_REQUEST = 64 * 1024  # TSA and OCSP requests are a few hundred bytes


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_PKI_REQUEST:
            raise UploadTooLarge(f"PKI requests are limited to {_MAX_PKI_REQUEST} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/pki/tsa", summary="RFC 3161 time-stamp authority",
             response_class=Response,
             responses={200: {"content": {"application/timestamp-reply": {}}}})
async def timestamp(request: Request, container: ContainerDep) -> Response:
    body = await _body(request)
    reply = platform_pki(container).tsa.respond(body)
    return Response(reply, media_type="application/timestamp-reply")


@router.post("/pki/ocsp", summary="RFC 6960 OCSP responder (POST)", response_class=Response,
             responses={200: {"content": {"application/ocsp-response": {}}}})
async def ocsp_post(request: Request, container: ContainerDep) -> Response:
    body = await _body(request)
    return Response(platform_pki(container).ocsp.respond(body),
                    media_type="application/ocsp-response")


@router.get("/pki/ocsp/{encoded:path}", summary="RFC 6960 OCSP responder (GET, appendix A)",
            response_class=Response,
            responses={200: {"content": {"application/ocsp-response": {}}}})
def ocsp_get(encoded: str, request: Request, container: ContainerDep) -> Response:
    # The raw path keeps %2F as NSS sends it; decode_get_path URL-decodes once itself.
    raw_path = request.scope.get("raw_path", b"").decode("latin-1")
    prefix = "/pki/ocsp/"
    encoded_raw = raw_path[raw_path.find(prefix) + len(prefix):] if prefix in raw_path else encoded
    return Response(platform_pki(container).ocsp.respond_get(encoded_raw),
                    media_type="application/ocsp-response",
                    headers={"Cache-Control": "max-age=60"})


@router.get("/pki/crl/{name}.crl", summary="Certificate revocation list (DER)",
            response_class=Response,
            responses={200: {"content": {"application/pkix-crl": {}}}})
def crl(name: str, container: ContainerDep) -> Response:
    revocation_list = platform_pki(container).crl(name)
    if revocation_list is None:
        raise NotFound(f"no CA named {name!r}; try root or issuing")
    return Response(revocation_list.public_bytes(serialization.Encoding.DER),
                    media_type="application/pkix-crl")


@router.get("/pki/ca/{name}.crt", summary="CA certificate (DER); root.crt is the trust anchor",
            response_class=Response,
            responses={200: {"content": {"application/pkix-cert": {}}}})
def ca_certificate(name: str, container: ContainerDep) -> Response:
    cert = platform_pki(container).ca_certificate(name)
    if cert is None:
        raise NotFound(f"no CA named {name!r}; try root or issuing")
    return Response(cert.public_bytes(serialization.Encoding.DER),
                    media_type="application/pkix-cert")
