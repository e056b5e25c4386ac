"""The FastAPI application factory. Nothing is built at import time."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI

from license_core.clock import Clock

from .container import Container, build_container
from .errors import install_error_handlers
from .metrics import Metrics, MetricsMiddleware
from .limits import BodySizeLimitMiddleware, PublicRateLimitMiddleware
from .routers import directory, documents, health, licenses, pki
from .services.installation import ensure_installed
from .settings import Settings, get_settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, container: Container | None = None,
               clock: Clock | None = None, install: bool = True) -> FastAPI:
    """Build the app. ``uvicorn --factory verify_api.app:create_app`` works too."""
    if container is None:
        container = build_container(settings or get_settings(), clock=clock)
    if install:
        ensure_installed(container)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="elicense",
        version="0.1.0",
        summary="电子证照与签章核验服务 — e-license directory, issuance and verification",
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.metrics = Metrics()
    app.add_middleware(BodySizeLimitMiddleware,
                       max_bytes=container.settings.max_upload_bytes)
    app.add_middleware(PublicRateLimitMiddleware,
                       per_minute=container.settings.public_rate_limit_per_minute)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(directory.router)
    app.include_router(pki.router)
    from .routers import auth, certs  # 一证通用: certificate verification and login
    app.include_router(certs.router)
    app.include_router(auth.router)
    app.include_router(licenses.router)
    app.include_router(documents.router)
    from .routers import qr  # QR verification, trust list, /v/{token} (SPEC §7)
    app.include_router(qr.router)
    from .routers import verify  # public PDF verification (SPEC §6)
    app.include_router(verify.router)
    return app
