"""Assembles the service from its parts: key providers, PKI, signers, verifiers.

``create_wired_app`` is the uvicorn factory used by ``elicense serve``.
"""

from __future__ import annotations

from fastapi import FastAPI

from .container import Container, build_container
from .settings import get_settings

__all__ = ["wire", "create_wired_app"]


def wire(container: Container) -> Container:
    """Register the installers and providers of every part on the container."""
    from .platform.pki import install_dev_pki
    container.cache["pki_installer"] = install_dev_pki
    from .services.holder_auth import register as register_holder_auth
    register_holder_auth(container)
    return container


def create_wired_app() -> FastAPI:
    from .app import create_app
    return create_app(container=wire(build_container(get_settings())))
