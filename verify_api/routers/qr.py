"""QR codes (SPEC §7): verification (JSON and the citizen's HTML page), the signed trust list,
and the holder's presentation QR (亮证)."""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from license_core.clock import CHINA_TZ
from license_core.qr_token import InvalidToken
from license_core.lifecycle import LicenseStatus
from license_core.verification import Indication, SubIndication

from ..deps import ContainerDep, PrincipalDep
from ..services.qr import QrReport, qr_report_json, qr_service

__all__ = ["router", "render_verify_page", "render_invalid_page"]

router = APIRouter(tags=["qr"])

# The page is public and names a license: never cached, never framed, no referrer (the token is
# in the URL), nothing loaded from anywhere (inline CSS only).
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


class QrVerifyIn(BaseModel):
    payload: str = Field(max_length=2048, description="the scanned text: …/v/<token> or a token")


class PresentationIn(BaseModel):
    lifetime_seconds: int = Field(default=300, ge=30, le=900,
                                  description="how long the QR stays valid (default 5 minutes)")


@router.post("/v1/verify/qr", summary="Verify a scanned QR payload (URL or token) — public")
def verify_qr(body: QrVerifyIn, container: ContainerDep) -> dict[str, Any]:
    return qr_report_json(qr_service(container).verify(body.payload))


@router.get("/v1/trust-list", response_class=Response,
            summary="The signed trust list: CA certificates and QR keys (compact JWS) — public",
            responses={200: {"content": {"application/jose": {}, "application/json": {}}}})
def trust_list(container: ContainerDep,
               format: Annotated[Literal["jws", "json"], Query(
                   description="jws (default): the signed list; json: its payload alone")] = "jws",
               ) -> Response:
    jws, payload = qr_service(container).trust_list()
    headers = {"Cache-Control": "public, max-age=300"}
    if format == "json":
        return JSONResponse(payload, headers=headers)
    return Response(jws, media_type="application/jose", headers=headers)


@router.post("/v1/me/licenses/{license_id}/presentations", status_code=201,
             summary="A short-lived presentation QR (亮证) for one of my licenses — holder")
def create_presentation(license_id: str, principal: PrincipalDep, container: ContainerDep,
                        body: Annotated[PresentationIn | None, Body()] = None) -> JSONResponse:
    lifetime = timedelta(seconds=(body or PresentationIn()).lifetime_seconds)
    data = qr_service(container).present(license_id, principal=principal, lifetime=lifetime)
    return JSONResponse(data, status_code=201)


@router.get("/v/{token}", response_class=HTMLResponse, include_in_schema=True,
            summary="The page a citizen sees after scanning a printed QR — public")
def verify_page(token: str, container: ContainerDep) -> HTMLResponse:
    service = qr_service(container)
    try:
        report = service.verify(token, purpose="verify_qr_page")
    except InvalidToken:
        return HTMLResponse(render_invalid_page(container.clock.now()), status_code=400,
                            headers=_PAGE_HEADERS)
    return HTMLResponse(render_verify_page(report), headers=_PAGE_HEADERS)


# -- the page ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _template() -> Template:
    text = (resources.files("verify_api") / "templates" / "verify_page.html").read_text("utf-8")
    return Template(text)


_OK = ("ok", "✓", "有效")
_SIGNATURE_TEXT = {
    SubIndication.NO_CERTIFICATE_CHAIN_FOUND: "该二维码不是由本平台签发的，无法确认其真实性。",
    SubIndication.SIG_CRYPTO_FAILURE: "二维码签名校验失败，内容可能被篡改或伪造。",
    SubIndication.SIG_CONSTRAINTS_FAILURE: "二维码的签发时间与签名密钥不符，无法确认其真实性。",
    SubIndication.NOT_YET_VALID: "二维码的签发时间晚于当前时间，请稍后重试或核对设备时间。",
    SubIndication.LICENSE_UNKNOWN: "登记系统中查无此证照。",
    SubIndication.LICENSE_DATA_MISMATCH: "二维码中的证照信息与登记信息不一致。",
}
_STATUS_TEXT = {
    LicenseStatus.VALID: ("有效", "status-valid"),
    LicenseStatus.SUSPENDED: ("已暂停", "status-warn"),
    LicenseStatus.REVOKED: ("已吊销", "status-bad"),
    LicenseStatus.EXPIRED: ("已过期", "status-bad"),
    LicenseStatus.SUPERSEDED: ("已被新版本替代", "status-bad"),
}
_REVOKE_WORDS = {"cancelled": ("已注销", "该证照已由发证机关注销，不再有效。"),
                 "issued_in_error": ("已撤销", "该证照因签发错误已被发证机关撤销，不再有效。")}


def _e(value: Any) -> str:
    if isinstance(value, bool):
        value = "是" if value else "否"
    return html.escape("" if value is None else str(value), quote=True)


def _china_time(value: datetime) -> str:
    return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _status_word(status: LicenseStatus, reason: str | None) -> tuple[str, str]:
    if status is LicenseStatus.REVOKED and reason in _REVOKE_WORDS:
        return _REVOKE_WORDS[reason][0], "status-bad"
    return _STATUS_TEXT[status]


def _verdict(report: QrReport) -> tuple[str, str, str, str]:
    """(css class, mark, word, explanation) for the big verdict box."""
    sub = report.sub_indication
    registry = report.registry
    if report.indication is Indication.TOTAL_PASSED:
        return (*_OK, "该电子证照真实有效，登记状态正常。")
    if sub is SubIndication.LICENSE_REVOKED:
        reason = registry.status_reason if registry else None
        word, why = _REVOKE_WORDS.get(reason or "", ("已吊销", "该证照已被发证机关吊销，不再有效。"))
        return "bad", "✗", word, why
    if sub is SubIndication.LICENSE_SUSPENDED:
        return "warn", "!", "已暂停", "该证照已被发证机关暂停使用，请向发证机关核实。"
    if sub is SubIndication.LICENSE_EXPIRED:
        return "bad", "✗", "已过期", "该证照已超过有效期，不再有效。"
    if sub is SubIndication.LICENSE_SUPERSEDED:
        return ("bad", "✗", "已被新版本替代",
                "该证照信息已变更，此版本不再有效，请持证人出示最新版本。")
    if sub is SubIndication.EXPIRED:
        return "bad", "✗", "二维码已过期", "该亮证二维码已超过有效时间，请持证人重新生成。"
    return ("bad" if report.indication is Indication.TOTAL_FAILED else "warn", "✗", "无法核验",
            _SIGNATURE_TEXT.get(sub, "无法确认该二维码的真实性。") if sub else
            "无法确认该二维码的真实性。")


def _row(label: str, value_html: str, *, ident: str | None = None) -> str:
    attr = f' id="{ident}"' if ident else ""
    return f'      <div class="row"><dt>{_e(label)}</dt><dd{attr}>{value_html}</dd></div>'


def _details(report: QrReport) -> str:
    registry = report.registry
    if registry is None or registry.license is None:
        return ""
    lic = registry.license
    assert registry.status is not None
    word, css = _status_word(registry.status, registry.status_reason)
    valid_to = _e(lic["valid_to"]) if lic["valid_to"] else "长期有效"
    rows = [
        _row("证照类型", _e(lic["type_name"])),
        _row("证照编号", _e(lic["license_number"])),
        _row("持证主体", _e(lic["holder_name"])),
        _row("发证机关", _e(lic["issuer_name"])),
        _row("有效期", f"{_e(lic['valid_from'])} 至 {valid_to}"),
        _row("版本", _e(lic["version"])),
        _row("登记状态", f'<span class="{css}">{_e(word)}</span>', ident="registry-status"),
    ]
    claims = report.token.claims
    if claims.expires_at is not None:
        expires = datetime.fromtimestamp(claims.expires_at, tz=CHINA_TZ)
        rows.append(_row("亮证有效至", _e(_china_time(expires) + " 北京时间")))
    fields = [_row(f["label"], _e(f["value"])) for f in lic["fields"]]
    parts = ['  <section class="card">', "    <h2>证照信息</h2>", "    <dl>", *rows,
             "    </dl>", "  </section>"]
    if fields:
        parts += ['  <section class="card">', "    <h2>公开信息</h2>", "    <dl>", *fields,
                  "    </dl>", "  </section>"]
    return "\n".join(parts)


def _identifier_row(report: QrReport) -> str:
    registry = report.registry
    if registry is None or registry.license is None:
        return ""
    return _row("证照标识", f'<span class="mono">{_e(registry.license["id"])}</span>')


def render_verify_page(report: QrReport) -> str:
    """The citizen's page for a verified (or failed) QR; every value is HTML-escaped."""
    css, mark, word, why = _verdict(report)
    return _template().substitute(
        title=_e(f"电子证照核验：{word}"), verdict_class=css, verdict_mark=_e(mark),
        verdict_word=_e(word), explanation=_e(why), details=_details(report),
        identifier_row=_identifier_row(report), checked_at=_e(_china_time(report.verified_at)),
        note=_e("结果依据发证机关登记系统的实时状态。持证主体名称已做脱敏处理；"
                "请核对证照原件或持证人身份与上述信息一致。"))


def render_invalid_page(at: datetime) -> str:
    """The friendly page for a URL that holds no valid QR token (served with status 400)."""
    return _template().substitute(
        title=_e("电子证照核验：无法识别"), verdict_class="bad", verdict_mark="✗",
        verdict_word=_e("无法识别"),
        explanation=_e("该链接不是有效的电子证照核验二维码。请确认扫描的是证照上印制的二维码，"
                       "或请持证人重新出示。"),
        details="", identifier_row="", checked_at=_e(_china_time(at)),
        note=_e("如有疑问，请联系发证机关或在政务服务窗口核验。"))
