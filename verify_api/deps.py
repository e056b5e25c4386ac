"""FastAPI dependencies: the container, a per-request session, the caller's principal."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from directory.clients import authenticate_key
from license_core.errors import Forbidden, Unauthorized

from .container import Container

__all__ = ["Principal", "get_container", "get_session", "ContainerDep", "SessionDep",
           "current_principal", "PrincipalDep", "require_role", "AdminDep", "IssuerDep"]


@dataclass(frozen=True)
class Principal:
    kind: str  # "client" | "holder"
    role: str  # admin | issuer | verifier | holder
    subject: str  # client id or holder id
    issuer_code: str | None = None
    name: str = ""

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.subject}"


def get_container(request: Request) -> Container:
    return request.app.state.container


ContainerDep = Annotated[Container, Depends(get_container)]


def get_session(container: ContainerDep) -> Iterator[Session]:
    """One session per request: committed when the route returns, rolled back on any error."""
    session = container.session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def current_principal(request: Request, container: ContainerDep) -> Principal:
    token = _bearer(request)
    if token is None:
        raise Unauthorized("send Authorization: Bearer <api key or holder token>")
    resolver = container.cache.get("holder_token_resolver")
    if resolver is not None and not token.startswith("elk_"):
        principal = resolver(token)
        if principal is not None:
            return principal
        raise Unauthorized("the holder token is invalid or expired")
    with container.session() as session:
        client = authenticate_key(session, api_key=token)
        if client is None:
            raise Unauthorized("the API key is not valid")
        return Principal(kind="client", role=client.role, subject=client.id,
                         issuer_code=client.issuer_code, name=client.name)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: str):  # type: ignore[no-untyped-def]
    def _check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"this needs the {' or '.join(roles)} role; "
                            f"your key has the {principal.role} role")
        return principal
    return _check


AdminDep = Annotated[Principal, Depends(require_role("admin"))]
IssuerDep = Annotated[Principal, Depends(require_role("issuer"))]
