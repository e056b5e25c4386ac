"""API clients: keys are shown once and stored only as a SHA-256 hash (they are 256-bit random)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from license_core.errors import ValidationFailed

from .catalog import get_issuer
from .models import ApiClient

__all__ = ["ROLES", "NewClient", "create_client", "authenticate_key", "list_clients"]

ROLES = ("admin", "issuer", "verifier")
_PREFIX = "elk_"


@dataclass(frozen=True)
class NewClient:
    client_id: str
    api_key: str
    role: str
    name: str
    issuer_code: str | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_client(session: Session, *, name: str, role: str, issuer_code: str | None,
                  at: datetime) -> NewClient:
    """Raises ValidationFailed for an unknown role or an issuer role without an issuer."""
    if role not in ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(ROLES)}", field="role")
    if not name or len(name) > 200:
        raise ValidationFailed("name must be 1-200 characters", field="name")
    if role == "issuer":
        if not issuer_code:
            raise ValidationFailed("an issuer client needs --issuer CODE", field="issuer")
        get_issuer(session, code=issuer_code)
    elif issuer_code:
        raise ValidationFailed("only issuer clients are bound to an issuer", field="issuer")
    client_id = str(uuid.uuid4())
    key = _PREFIX + secrets.token_urlsafe(32)
    session.add(ApiClient(id=client_id, name=name, role=role, issuer_code=issuer_code,
                          key_prefix=key[:12], key_hash=_hash(key), created_at=at))
    session.flush()
    return NewClient(client_id, key, role, name, issuer_code)


def authenticate_key(session: Session, *, api_key: str) -> ApiClient | None:
    if not api_key.startswith(_PREFIX) or len(api_key) > 100:
        return None
    digest = _hash(api_key)
    for row in session.scalars(select(ApiClient).where(ApiClient.key_prefix == api_key[:12])):
        if hmac.compare_digest(row.key_hash, digest) and not row.disabled:
            return row
    return None


def list_clients(session: Session) -> list[ApiClient]:
    return list(session.scalars(select(ApiClient).order_by(ApiClient.created_at)))
