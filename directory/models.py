"""SQLAlchemy 2 models. All shared state of the service lives here (or in the HSM).

Holder codes (PIPL art. 28 sensitive personal information) are never stored in the clear: a
``Holder`` row keeps the code encrypted plus a keyed HMAC to find it; licenses, events and usage
records refer to the holder by its surrogate id, so erasing a holder never touches the hash chain.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Integer,
                        LargeBinary, String, Text, UniqueConstraint, Index)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "Issuer", "LicenseType", "LicenseTypeIssuer", "Holder", "License",
           "LicenseHolderLink", "LicenseNumber", "Blob", "Event", "ApiClient",
           "IdempotencyRecord", "Counter", "Certificate", "KeyMaterial", "SystemState",
           "AuthChallenge", "UsageRecord"]


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        from datetime import timezone
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        from datetime import timezone
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class Issuer(Base):
    __tablename__ = "issuers"

    code: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    area_code: Mapped[str] = mapped_column(String(6))
    level: Mapped[str] = mapped_column(String(20), default="municipal")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LicenseType(Base):
    __tablename__ = "license_types"

    code: Mapped[str] = mapped_column(String(21), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200), nullable=True)
    defining_body_code: Mapped[str] = mapped_column(String(18))
    defining_body_name: Mapped[str] = mapped_column(String(200))
    holder_kind: Mapped[str] = mapped_column(String(20))
    validity_years: Mapped[int | None] = mapped_column(Integer, nullable=True)
    issuing_level: Mapped[str] = mapped_column(String(20), default="municipal")
    sharing_level: Mapped[str] = mapped_column(String(20))
    service_items: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    issuer_links: Mapped[list["LicenseTypeIssuer"]] = relationship(
        back_populates="license_type", cascade="all, delete-orphan", lazy="selectin",
        order_by="LicenseTypeIssuer.position")

    @property
    def issuer_codes(self) -> list[str]:
        return [link.issuer_code for link in self.issuer_links]


class LicenseTypeIssuer(Base):
    __tablename__ = "license_type_issuers"

    type_code: Mapped[str] = mapped_column(ForeignKey("license_types.code"), primary_key=True)
    issuer_code: Mapped[str] = mapped_column(ForeignKey("issuers.code"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)

    license_type: Mapped[LicenseType] = relationship(back_populates="issuer_links")


class Holder(Base):
    __tablename__ = "holders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    code_index: Mapped[str] = mapped_column(String(64), unique=True)
    code_enc: Mapped[bytes] = mapped_column(LargeBinary)
    code_type: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class License(Base):
    """One *version* of an e-license; ``id`` is its full GB/T 36904 identifier."""

    __tablename__ = "licenses"
    __table_args__ = (
        UniqueConstraint("type_code", "issuer_code", "serial", "version", name="uq_license_version"),
        Index("ix_licenses_issuer_type", "issuer_code", "type_code"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type_code: Mapped[str] = mapped_column(ForeignKey("license_types.code"))
    issuer_code: Mapped[str] = mapped_column(ForeignKey("issuers.code"))
    serial: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    holder_id: Mapped[str] = mapped_column(ForeignKey("holders.id"), index=True)
    holder_name: Mapped[str] = mapped_column(String(200))
    co_holders_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    license_number: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    predecessor_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    successor_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    pdf_sha256: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), nullable=True)
    status_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LicenseHolderLink(Base):
    """Which holders (main holder and co-holders) a license version belongs to."""

    __tablename__ = "license_holders"

    license_id: Mapped[str] = mapped_column(ForeignKey("licenses.id"), primary_key=True)
    holder_id: Mapped[str] = mapped_column(ForeignKey("holders.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(20))


class LicenseNumber(Base):
    """The printed license number (证照编号) is unique per type and issuer, across versions."""

    __tablename__ = "license_numbers"

    type_code: Mapped[str] = mapped_column(String(21), primary_key=True)
    issuer_code: Mapped[str] = mapped_column(String(18), primary_key=True)
    license_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    serial: Mapped[str] = mapped_column(String(32))
    first_license_id: Mapped[str] = mapped_column(String(128))


class Blob(Base):
    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Event(Base):
    """Append-only, hash-chained log: who did what, when and why. References only, no PII."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200), index=True)
    reason: Mapped[str | None] = mapped_column(String(100), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ApiClient(Base):
    __tablename__ = "api_clients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    issuer_code: Mapped[str | None] = mapped_column(ForeignKey("issuers.code"), nullable=True)
    key_prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"

    client_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Counter(Base):
    """Named monotonic counters (serials, CRL numbers, the event-chain head lock row)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class Certificate(Base):
    """Every certificate the built-in CA issued, with its revocation state."""

    __tablename__ = "certificates"

    serial: Mapped[str] = mapped_column(String(48), primary_key=True)  # hex
    issuer_name: Mapped[str] = mapped_column(String(400), primary_key=True)
    role: Mapped[str] = mapped_column(String(30))
    label: Mapped[str | None] = mapped_column(String(100), nullable=True)
    issuer_code: Mapped[str | None] = mapped_column(String(18), nullable=True, index=True)
    subject: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[datetime] = mapped_column(UtcDateTime())
    der: Mapped[bytes] = mapped_column(LargeBinary)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)


class KeyMaterial(Base):
    """Platform and department keys: encrypted PKCS#8 (dev/file) or a PKCS#11 reference."""

    __tablename__ = "key_material"

    label: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(30))
    issuer_code: Mapped[str | None] = mapped_column(String(18), nullable=True, index=True)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    key_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    pkcs11_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SystemState(Base):
    """Small named facts about this installation (e.g. catalog loaded, PKI built)."""

    __tablename__ = "system_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AuthChallenge(Base):
    """A 一证通用 login nonce: issued by any worker, consumed once by any worker."""

    __tablename__ = "auth_challenges"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class UsageRecord(Base):
    """用证记录: who used (verified or pulled) which license of which holder, when and why.

    References only: the holder's surrogate id, the license id, the using client (or
    ``public`` for anonymous verification) — never a raw holder code.
    """

    __tablename__ = "usage_records"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    holder_id: Mapped[str] = mapped_column(ForeignKey("holders.id"), index=True)
    license_id: Mapped[str] = mapped_column(String(128), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(40))  # verify_pdf | verify_qr | reuse | ...
    outcome: Mapped[str] = mapped_column(String(40))
    service_item_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    case_number: Mapped[str | None] = mapped_column(String(100), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
