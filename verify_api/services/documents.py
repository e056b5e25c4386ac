"""E-official documents: approval signatures by a department, countersignatures."""

from __future__ import annotations

import hashlib

from directory.events import append_event

from ..container import Container
from ..platform.sealing import sealing_service

__all__ = ["sign_document"]


def sign_document(container: Container, pdf: bytes, *, issuer_code: str, actor: str) -> bytes:
    """Raises DocumentLocked (certified no-changes input), MalformedDocument, SealKeyRevoked."""
    at = container.clock.now()
    signed = sealing_service(container).sign_document(pdf, issuer_code=issuer_code)
    with container.session() as session, session.begin():
        append_event(session, at=at, actor=actor, action="document.sign", subject=issuer_code,
                     detail={"input_sha256": hashlib.sha256(pdf).hexdigest(),
                             "output_sha256": hashlib.sha256(signed).hexdigest()})
    return signed
