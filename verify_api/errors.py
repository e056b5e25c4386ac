"""The one table from error codes to HTTP status, and RFC 9457 problem+json rendering."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from license_core import errors as e

__all__ = ["STATUS_BY_ERROR", "status_for", "problem", "install_error_handlers", "PROBLEM_TYPE"]

PROBLEM_TYPE = "https://elicense.example/problems/"
PROBLEM_JSON = "application/problem+json"

# Most specific class first: the first isinstance match wins.
STATUS_BY_ERROR: tuple[tuple[type[e.LicenseError], int], ...] = (
    (e.UploadTooLarge, 413),
    (e.RateLimited, 429),
    (e.Unauthorized, 401),
    (e.Forbidden, 403),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.ValidationFailed, 422),
    (e.DependencyUnavailable, 503),
    (e.ConfigurationError, 500),
)


def status_for(exc: e.LicenseError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def problem(status: int, code: str, title: str, detail: str, *, field: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_TYPE + code, "title": title, "status": status,
                            "detail": detail, "code": code}
    if field:
        body["field"] = field
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 413: "upload_too_large",
               415: "unsupported_media_type", 429: "rate_limited"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(e.LicenseError)
    async def _license_error(_request: Request, exc: e.LicenseError) -> JSONResponse:
        status = status_for(exc)
        headers = {"Retry-After": str(exc.extra.get("retry_after", 60))} if status == 429 else None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        extra = {k: v for k, v in exc.extra.items() if k != "retry_after"}
        return problem(status, exc.code, exc.title, exc.detail, field=exc.field,
                       headers=headers, **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        detail = f"{field}: {first.get('msg')}" if field else str(first.get("msg", "invalid"))
        return problem(422, "validation_error", "Invalid input", detail, field=field,
                       errors=[{"field": ".".join(str(p) for p in err.get("loc", ())),
                                "message": err.get("msg")} for err in errors[:20]])

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, code.replace("_", " ").capitalize(),
                       str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:  # noqa: ARG001
        return problem(500, "internal_error", "Internal error",
                       "an unexpected error occurred; it has been logged")
