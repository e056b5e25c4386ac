"""``elicense init``: data directory, migrations, development PKI, demo catalog. Idempotent and
safe to run concurrently (one PKI, one catalog, under the database's installation lock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from directory import catalog as q
from directory.db import installation_lock
from directory.events import append_event
from directory.migrate import upgrade_to_head
from directory.models import SystemState

from ..container import Container

__all__ = ["InstallReport", "ensure_installed", "get_state", "set_state"]


@dataclass
class InstallReport:
    home: str
    database: str
    created: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"home": self.home, "database": self.database, "created": self.created}


def get_state(session: Session, name: str) -> dict[str, Any] | None:
    row = session.get(SystemState, name)
    return row.value if row else None


def set_state(session: Session, name: str, value: dict[str, Any], *, at: datetime) -> None:
    row = session.get(SystemState, name)
    if row is None:
        session.add(SystemState(name=name, value=value, updated_at=at))
    else:
        row.value, row.updated_at = value, at
    session.flush()


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def ensure_installed(container: Container) -> InstallReport:
    settings = container.settings
    report = InstallReport(home=str(settings.home.resolve()),
                           database=_safe_url(settings.resolved_database_url))
    with installation_lock(container.engine):
        upgrade_to_head(container.engine)
        with container.session() as session, session.begin():
            now = container.clock.now()
            if settings.demo_catalog and get_state(session, "demo_catalog") is None:
                counts = q.import_catalog(session, document=q.load_demo_catalog(), at=now)
                set_state(session, "demo_catalog", counts, at=now)
                append_event(session, at=now, actor="system:init", action="catalog.import",
                             subject="demo_catalog", detail=counts)
                report.created.append("demo catalog")
        pki_installer = container.cache.get("pki_installer")
        if pki_installer is not None:
            report.created.extend(pki_installer(container))
    return report
