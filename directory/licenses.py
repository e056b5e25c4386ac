"""Queries for licenses, their holders, printed numbers, PDFs and idempotency records."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from license_core.errors import DuplicateLicenseNumber, UnknownLicense

from .counters import next_value
from .models import (Blob, Holder, IdempotencyRecord, License, LicenseHolderLink,
                     LicenseNumber)
from .pii import HolderCodeCipher

__all__ = ["get_or_create_holder", "find_holder", "holder_code", "allocate_serial",
           "reserve_license_number", "find_license_number", "put_blob", "get_blob",
           "add_license", "get_license", "lock_license", "list_licenses", "licenses_of_holder",
           "LicensePage", "get_idempotency", "put_idempotency", "request_fingerprint",
           "encrypt_co_holders", "decrypt_co_holders"]


def find_holder(session: Session, *, cipher: HolderCodeCipher, code: str) -> Holder | None:
    return session.scalars(select(Holder).where(Holder.code_index == cipher.index(code))).first()


def get_or_create_holder(session: Session, *, cipher: HolderCodeCipher, code: str,
                         code_type: str, at: datetime) -> Holder:
    existing = find_holder(session, cipher=cipher, code=code)
    if existing is not None:
        return existing
    holder = Holder(id=str(uuid.uuid4()), code_index=cipher.index(code),
                    code_enc=cipher.encrypt(code.encode()), code_type=code_type, created_at=at)
    try:
        with session.begin_nested():
            session.add(holder)
    except IntegrityError:  # another worker created the same holder concurrently
        found = find_holder(session, cipher=cipher, code=code)
        assert found is not None
        return found
    return holder


def holder_code(holder: Holder, *, cipher: HolderCodeCipher) -> str:
    return cipher.decrypt(holder.code_enc).decode()


def encrypt_co_holders(co_holders: list[dict[str, Any]], *, cipher: HolderCodeCipher) -> bytes:
    return cipher.encrypt(json.dumps(co_holders, ensure_ascii=False).encode(),
                          context=b"co-holders")


def decrypt_co_holders(blob: bytes | None, *, cipher: HolderCodeCipher) -> list[dict[str, Any]]:
    if not blob:
        return []
    return json.loads(cipher.decrypt(blob, context=b"co-holders"))


def allocate_serial(session: Session, *, type_code: str, issuer_code: str, year: int) -> str:
    """A new serial for (type, issuer): the issue year and a counter, never reused."""
    n = next_value(session, f"serial:{type_code}:{issuer_code}")
    return f"{year:04d}{n:07d}"


def find_license_number(session: Session, *, type_code: str, issuer_code: str,
                        license_number: str) -> LicenseNumber | None:
    return session.get(LicenseNumber, (type_code, issuer_code, license_number))


def reserve_license_number(session: Session, *, type_code: str, issuer_code: str,
                           license_number: str, serial: str, license_id: str) -> None:
    """Raises DuplicateLicenseNumber when the number was already issued by this issuer."""
    existing = find_license_number(session, type_code=type_code, issuer_code=issuer_code,
                                   license_number=license_number)
    if existing is not None:
        raise DuplicateLicenseNumber(
            f"license number {license_number} was already issued for this type by this issuer "
            f"({existing.first_license_id})", field="license_number",
            extra={"license_id": existing.first_license_id})
    try:
        with session.begin_nested():
            session.add(LicenseNumber(type_code=type_code, issuer_code=issuer_code,
                                      license_number=license_number, serial=serial,
                                      first_license_id=license_id))
    except IntegrityError as exc:
        raise DuplicateLicenseNumber(
            f"license number {license_number} is being issued concurrently",
            field="license_number") from exc


def put_blob(session: Session, *, content: bytes, media_type: str, at: datetime) -> str:
    digest = hashlib.sha256(content).hexdigest()
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, media_type=media_type, size=len(content),
                         content=content, created_at=at))
        session.flush()
    return digest


def get_blob(session: Session, *, sha256: str) -> Blob | None:
    return session.get(Blob, sha256)


def add_license(session: Session, *, row: License, holder_links: list[tuple[str, str]]) -> License:
    session.add(row)
    session.flush()
    for holder_id, role in holder_links:
        session.merge(LicenseHolderLink(license_id=row.id, holder_id=holder_id, role=role))
    session.flush()
    return row


def get_license(session: Session, *, license_id: str) -> License:
    row = session.get(License, license_id) if isinstance(license_id, str) else None
    if row is None:
        raise UnknownLicense(f"no license with id {license_id}", field="id")
    return row


def lock_license(session: Session, *, license_id: str) -> License:
    """The license row locked for update (lifecycle changes of one license are serialised)."""
    row = session.scalars(select(License).where(License.id == license_id)
                          .with_for_update()).first()
    if row is None:
        raise UnknownLicense(f"no license with id {license_id}", field="id")
    return row


@dataclass(frozen=True)
class LicensePage:
    rows: list[License]
    count: int


def list_licenses(session: Session, *, issuer_code: str | None, type_code: str | None = None,
                  holder_id: str | None = None, statuses: tuple[str, ...] | None = None,
                  expired_on: date | None = None, not_expired_on: date | None = None,
                  page: int = 1, per_page: int = 50) -> LicensePage:
    """A page of license versions, newest first. ``expired_on`` / ``not_expired_on`` filter on
    the computed expiry (valid_to before / not before that local date)."""
    query = select(License)
    if expired_on is not None:
        query = query.where(License.valid_to.is_not(None), License.valid_to < expired_on)
    if not_expired_on is not None:
        query = query.where(or_(License.valid_to.is_(None), License.valid_to >= not_expired_on))
    if issuer_code is not None:
        query = query.where(License.issuer_code == issuer_code)
    if type_code:
        query = query.where(License.type_code == type_code)
    if holder_id is not None:
        query = query.where(License.holder_id == holder_id)
    if statuses:
        query = query.where(License.status.in_(statuses))
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(License.issued_at.desc(), License.id)
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return LicensePage(list(rows), count)


def licenses_of_holder(session: Session, *, holder_id: str) -> list[License]:
    query = (select(License).join(LicenseHolderLink, LicenseHolderLink.license_id == License.id)
             .where(LicenseHolderLink.holder_id == holder_id)
             .order_by(License.issued_at.desc()))
    return list(session.scalars(query))


def request_fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False,
                                     default=str).encode()).hexdigest()


def get_idempotency(session: Session, *, client_id: str, key: str) -> IdempotencyRecord | None:
    return session.get(IdempotencyRecord, (client_id, key))


def put_idempotency(session: Session, *, client_id: str, key: str, request_hash: str,
                    status_code: int, response: dict[str, Any], at: datetime) -> None:
    session.add(IdempotencyRecord(client_id=client_id, key=key, request_hash=request_hash,
                                  status_code=status_code, response=response, created_at=at))
    session.flush()
