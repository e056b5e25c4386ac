"""Issuance and lifecycle of e-licenses.

Issuance is two-phase: everything is validated, rendered and sealed first (nothing written);
then the holder, record, version, PDF, license number, idempotency record and event commit in
one transaction — or not at all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from converters.render import LicenseRenderSpec, add_scan_pages, render_license_pdf
from directory import catalog as catalog_q
from directory import licenses as q
from directory.events import append_event
from directory.models import Holder, License, LicenseType
from license_core.canonical import data_digest
from license_core.clock import CHINA_TZ
from license_core.errors import (Forbidden, IdempotencyConflict, InvalidTransition, NotFound,
                                 ValidationFailed)
from license_core.holder_codes import (HolderCodeType, mask_holder_code, mask_name,
                                       normalize_holder_code)
from license_core.identifiers import LicenseIdentifier
from license_core.lifecycle import (Action, LicenseStatus, effective_status, next_status,
                                    validate_reason)
from license_core.qr_token import QrClaims, encode_token, epoch_day, qr_url, token_holder_name
from license_core.records import license_record
from license_core.schema import HolderKind, validate_license_data

from ..container import Container
from ..deps import Principal
from ..platform.sealing import sealing_service

__all__ = ["MintRequest", "MintResult", "LicenseService", "license_service", "license_view"]

_LICENSE_NUMBER = re.compile(r"^[0-9A-Za-z\u4e00-\u9fff()（）\-_/.]{1,64}$")
_CO_HOLDER_ROLES = {"co_owner", "guardian", "co_holder", "legal_representative"}


def _date(value: Any, field_name: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationFailed(f"{field_name} must be an ISO date YYYY-MM-DD", field=field_name)


@dataclass(frozen=True)
class MintRequest:
    type_code: str
    holder_id: str
    holder_name: str
    data: Mapping[str, Any]
    co_holders: tuple[Mapping[str, Any], ...] = ()
    license_number: str | None = None
    valid_from: date | None = None
    valid_to: date | None = None
    scan: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_body(cls, body: Any, *, scan: bytes | None = None) -> "MintRequest":
        """Raises ValidationFailed naming the field (``holder.id``, ``data``, ...)."""
        if not isinstance(body, Mapping):
            raise ValidationFailed("the request body must be a JSON object")
        holder = body.get("holder")
        if not isinstance(holder, Mapping):
            raise ValidationFailed("holder {id, name} is required", field="holder")
        holder_id, holder_name = holder.get("id"), holder.get("name")
        if not isinstance(holder_id, str) or not holder_id:
            raise ValidationFailed("holder.id is required", field="holder.id")
        if not isinstance(holder_name, str) or not holder_name.strip() or len(holder_name) > 200:
            raise ValidationFailed("holder.name must be 1-200 characters", field="holder.name")
        type_code = body.get("type_code")
        if not isinstance(type_code, str) or not type_code:
            raise ValidationFailed("type_code is required", field="type_code")
        co_raw = body.get("co_holders") or []
        if not isinstance(co_raw, list) or len(co_raw) > 20:
            raise ValidationFailed("co_holders must be a list (at most 20)", field="co_holders")
        number = body.get("license_number")
        if number is not None and (not isinstance(number, str) or
                                   not _LICENSE_NUMBER.match(number)):
            raise ValidationFailed("license_number must be 1-64 letters, digits or -_/.()",
                                   field="license_number")
        data = body.get("data", {})
        if not isinstance(data, Mapping):
            raise ValidationFailed("data must be an object", field="data")
        return cls(type_code=type_code, holder_id=holder_id, holder_name=holder_name.strip(),
                   data=dict(data), co_holders=tuple(co_raw), license_number=number,
                   valid_from=_date(body.get("valid_from"), "valid_from"),
                   valid_to=_date(body.get("valid_to"), "valid_to"), scan=scan)

    def fingerprint(self) -> str:
        body = {"type_code": self.type_code, "holder": [self.holder_id, self.holder_name],
                "data": self.data, "co_holders": list(self.co_holders),
                "license_number": self.license_number, "valid_from": self.valid_from,
                "valid_to": self.valid_to,
                "scan": hashlib.sha256(self.scan).hexdigest() if self.scan else None}
        return q.request_fingerprint(body)


@dataclass(frozen=True)
class MintResult:
    license: dict[str, Any]
    created: bool  # False: an idempotent replay


def _today(at: datetime) -> date:
    return at.astimezone(CHINA_TZ).date()


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def license_view(row: License, *, holder_code: str, holder_code_type: str,
                 co_holders: list[dict[str, Any]], base_url: str, at: datetime,
                 masked: bool = False) -> dict[str, Any]:
    """The API shape of a license (SPEC §4); ``masked`` for public answers."""
    return {
        "id": row.id,
        "version": f"{row.version:03d}",
        "status": effective_status(row.status, row.valid_to, at).value,
        "type_code": row.type_code,
        "issuer_code": row.issuer_code,
        "holder": {"id": mask_holder_code(holder_code) if masked else holder_code,
                   "name": mask_name(row.holder_name) if masked else row.holder_name,
                   "code_type": holder_code_type},
        "co_holders": [{"id": mask_holder_code(c["id"]) if masked else c["id"],
                        "name": mask_name(c["name"]) if masked else c["name"],
                        "code_type": c["code_type"], "role": c.get("role", "co_holder")}
                       for c in co_holders],
        "license_number": row.license_number,
        "data": dict(row.data),
        "valid_from": row.valid_from.isoformat(),
        "valid_to": row.valid_to.isoformat() if row.valid_to else None,
        "predecessor_id": row.predecessor_id,
        "successor_id": row.successor_id,
        "status_reason": row.status_reason,
        "issued_at": row.issued_at.isoformat(),
        "pdf_url": f"{base_url.rstrip('/')}/v1/licenses/{row.id}/pdf",
    }


class LicenseService:
    def __init__(self, container: Container) -> None:
        self.container = container

    # -- helpers ------------------------------------------------------------------------------

    def view(self, session: Session, row: License, *, masked: bool = False) -> dict[str, Any]:
        """The API shape of ``row`` (holder codes decrypted; masked for public answers)."""
        cipher = self.container.cipher
        holder = session.get(Holder, row.holder_id)
        assert holder is not None  # a foreign key
        return license_view(row, holder_code=q.holder_code(holder, cipher=cipher),
                            holder_code_type=holder.code_type,
                            co_holders=q.decrypt_co_holders(row.co_holders_enc, cipher=cipher),
                            base_url=self.container.settings.base_url,
                            at=self.container.clock.now(), masked=masked)

    @staticmethod
    def _authorize(row: License, principal: Principal, *, write: bool) -> None:
        if principal.role == "admin" and not write:
            return
        if principal.role == "issuer" and principal.issuer_code == row.issuer_code:
            return
        raise Forbidden("this license belongs to another issuing department")

    def _validated_co_holders(self, raw: tuple[Mapping[str, Any], ...]) -> list[dict[str, Any]]:
        out = []
        for i, item in enumerate(raw):
            where = f"co_holders[{i}]"
            if not isinstance(item, Mapping):
                raise ValidationFailed("each co-holder is {id, name, role}", field=where)
            name = item.get("name")
            if not isinstance(name, str) or not name.strip() or len(name) > 200:
                raise ValidationFailed("co-holder name must be 1-200 characters",
                                       field=f"{where}.name")
            code, kind = normalize_holder_code(item.get("id"), item.get("code_type"),
                                               field=f"{where}.id")
            role = item.get("role", "co_holder")
            if role not in _CO_HOLDER_ROLES:
                raise ValidationFailed(f"co-holder role must be one of {sorted(_CO_HOLDER_ROLES)}",
                                       field=f"{where}.role")
            out.append({"id": code, "name": name.strip(), "code_type": kind.value, "role": role})
        return out

    def _qr(self, *, license_id: str, issued_at: datetime, valid_to: date | None,
            holder_name: str, data: Mapping[str, Any]) -> str:
        from ..platform.qr_keys import qr_keyring  # the active QR key (rotation: SPEC §7)
        key = qr_keyring(self.container).active(at=issued_at)
        claims = QrClaims(license_id=license_id, issued_at=int(issued_at.timestamp()),
                          valid_to_day=epoch_day(valid_to) if valid_to else None,
                          holder_name_masked=token_holder_name(holder_name),
                          data_digest=data_digest(dict(data)))
        token = encode_token(claims, private_key=key.private_key, kid=key.kid)
        return qr_url(self.container.settings.base_url, token)

    def _render_and_seal(self, *, ident: LicenseIdentifier, ltype: LicenseType, issuer_name: str,
                         holder_code: str, holder_name: str, holder_type: str,
                         co_holders: list[dict[str, Any]], license_number: str,
                         data: Mapping[str, Any], valid_from: date, valid_to: date | None,
                         at: datetime, scan: bytes | None) -> bytes:
        record = license_record(
            license_id=str(ident), version=ident.version, type_code=ltype.code,
            type_name=ltype.name, issuer_code=ident.issuer_code, issuer_name=issuer_name,
            holder_code=holder_code, holder_name=holder_name, holder_code_type=holder_type,
            co_holders=co_holders, license_number=license_number, data=data,
            valid_from=valid_from, valid_to=valid_to, issued_on=_today(at))
        spec = LicenseRenderSpec(
            type_name=ltype.name, type_name_en=ltype.name_en,
            fields=catalog_q.field_specs(ltype), data=data, holder_name=holder_name,
            holder_code_display=mask_holder_code(holder_code), holder_code_type=holder_type,
            co_holders=[{"name": c["name"], "role": c["role"], "id": mask_holder_code(c["id"]),
                         "code_type": c["code_type"]} for c in co_holders],
            license_number=license_number, issuer_name=issuer_name,
            issuer_code=ident.issuer_code, valid_from=valid_from, valid_to=valid_to,
            issued_on=_today(at), identifier=str(ident),
            verification_url=self._qr(license_id=str(ident), issued_at=at, valid_to=valid_to,
                                      holder_name=holder_name, data=data),
            record=record)
        rendered = render_license_pdf(spec)
        pdf = rendered.pdf_bytes
        if scan is not None:
            pdf = add_scan_pages(pdf, scan, max_bytes=self.container.settings.max_upload_bytes)
        return sealing_service(self.container).seal_license(
            pdf, issuer_code=ident.issuer_code, box=rendered.seal_box)

    # -- issuance -----------------------------------------------------------------------------

    def mint(self, request: MintRequest, *, issuer_code: str, actor: str,
             idempotency: tuple[str, str] | None = None) -> MintResult:
        """Validate, render, seal, then record atomically.

        Raises:
            UnknownLicenseType, Forbidden (type not issued by this department),
            InvalidHolderCode, ValidationFailed (field named), DuplicateLicenseNumber,
            IdempotencyConflict, SealKeyRevoked, MalformedDocument / UploadTooLarge (scan).
        """
        container = self.container
        fingerprint = request.fingerprint()
        if idempotency is not None:
            replay = self._replay(idempotency, fingerprint)
            if replay is not None:
                return replay
        at = container.clock.now()
        with container.session() as session:
            ltype = catalog_q.get_license_type(session, code=request.type_code)
            if issuer_code not in ltype.issuer_codes:
                raise Forbidden(f"department {issuer_code} does not issue {ltype.name} "
                                f"({ltype.code})", field="type_code")
            issuer_name = catalog_q.get_issuer(session, code=issuer_code).name
            kind = (HolderCodeType.RESIDENT_ID if ltype.holder_kind == HolderKind.PERSON.value
                    else HolderCodeType.USCC)
            holder_code, _ = normalize_holder_code(request.holder_id, kind)
            co_holders = self._validated_co_holders(request.co_holders)
            data = validate_license_data(catalog_q.field_specs(ltype), request.data)
            valid_from = request.valid_from or _today(at)
            valid_to = request.valid_to
            if valid_to is None and ltype.validity_years:
                valid_to = _add_years(valid_from, ltype.validity_years) - timedelta(days=1)
            if valid_to is not None and valid_to < valid_from:
                raise ValidationFailed("valid_to is before valid_from", field="valid_to")
            if request.license_number and q.find_license_number(
                    session, type_code=ltype.code, issuer_code=issuer_code,
                    license_number=request.license_number) is not None:
                q.reserve_license_number(session, type_code=ltype.code, issuer_code=issuer_code,
                                         license_number=request.license_number, serial="",
                                         license_id="")  # raises DuplicateLicenseNumber
            session.expunge(ltype)
        with container.session() as session, session.begin():
            serial = q.allocate_serial(session, type_code=ltype.code, issuer_code=issuer_code,
                                       year=_today(at).year)
        ident = LicenseIdentifier(ltype.code, issuer_code, serial, 1)
        license_number = request.license_number or f"{issuer_code[2:8]}{serial}"
        pdf = self._render_and_seal(
            ident=ident, ltype=ltype, issuer_name=issuer_name, holder_code=holder_code,
            holder_name=request.holder_name, holder_type=kind.value, co_holders=co_holders,
            license_number=license_number, data=data, valid_from=valid_from, valid_to=valid_to,
            at=at, scan=request.scan)
        try:
            with container.session() as session, session.begin():
                view = self._record(session, ident=ident, holder_code=holder_code,
                                    holder_type=kind.value, holder_name=request.holder_name,
                                    co_holders=co_holders, license_number=license_number,
                                    data=data, valid_from=valid_from, valid_to=valid_to,
                                    pdf=pdf, at=at, actor=actor,
                                    predecessor=None, detail={"converted": bool(request.scan)})
                if idempotency is not None:
                    q.put_idempotency(session, client_id=idempotency[0], key=idempotency[1],
                                      request_hash=fingerprint, status_code=201,
                                      response=view, at=at)
        except IntegrityError:
            if idempotency is not None:  # a concurrent request with the same key won
                replay = self._replay(idempotency, fingerprint)
                if replay is not None:
                    return replay
            raise
        return MintResult(view, True)

    def _replay(self, idempotency: tuple[str, str], fingerprint: str) -> MintResult | None:
        with self.container.session() as session:
            record = q.get_idempotency(session, client_id=idempotency[0], key=idempotency[1])
            if record is None:
                return None
            if record.request_hash != fingerprint:
                raise IdempotencyConflict(
                    "this Idempotency-Key was used with a different request; use a new key",
                    field="Idempotency-Key")
            row = q.get_license(session, license_id=record.response["id"])
            return MintResult(self.view(session, row), False)

    def _record(self, session: Session, *, ident: LicenseIdentifier, holder_code: str,
                holder_type: str, holder_name: str, co_holders: list[dict[str, Any]],
                license_number: str, data: Mapping[str, Any], valid_from: date,
                valid_to: date | None, pdf: bytes, at: datetime, actor: str,
                predecessor: License | None, detail: dict[str, Any]) -> dict[str, Any]:
        cipher = self.container.cipher
        holder = q.get_or_create_holder(session, cipher=cipher, code=holder_code,
                                        code_type=holder_type, at=at)
        links = [(holder.id, "holder")]
        for co in co_holders:
            co_row = q.get_or_create_holder(session, cipher=cipher, code=co["id"],
                                            code_type=co["code_type"], at=at)
            if co_row.id != holder.id:
                links.append((co_row.id, co["role"]))
        if predecessor is None:
            q.reserve_license_number(session, type_code=ident.type_code,
                                     issuer_code=ident.issuer_code, license_number=license_number,
                                     serial=ident.serial, license_id=str(ident))
        digest = q.put_blob(session, content=pdf, media_type="application/pdf", at=at)
        row = License(id=str(ident), type_code=ident.type_code, issuer_code=ident.issuer_code,
                      serial=ident.serial, version=ident.version,
                      status=LicenseStatus.VALID.value, holder_id=holder.id,
                      holder_name=holder_name,
                      co_holders_enc=q.encrypt_co_holders(co_holders, cipher=cipher)
                      if co_holders else None,
                      license_number=license_number, data=dict(data), valid_from=valid_from,
                      valid_to=valid_to, predecessor_id=predecessor.id if predecessor else None,
                      pdf_sha256=digest, issued_at=at, updated_at=at)
        q.add_license(session, row=row, holder_links=links)
        append_event(session, at=at, actor=actor,
                     action="license.amend" if predecessor else "license.issue",
                     subject=row.id,
                     detail={"type": row.type_code, "issuer": row.issuer_code,
                             "version": row.version, "pdf_sha256": digest,
                             "license_number": license_number,
                             "predecessor": predecessor.id if predecessor else None, **detail})
        return self.view(session, row)

    # -- reads --------------------------------------------------------------------------------

    def get(self, license_id: str, *, principal: Principal) -> dict[str, Any]:
        with self.container.session() as session:
            row = q.get_license(session, license_id=license_id)
            self._authorize(row, principal, write=False)
            return self.view(session, row)

    def pdf(self, license_id: str, *, principal: Principal) -> bytes:
        with self.container.session() as session:
            row = q.get_license(session, license_id=license_id)
            self._authorize(row, principal, write=False)
            blob = q.get_blob(session, sha256=row.pdf_sha256 or "")
            if blob is None:
                raise NotFound("this license has no PDF")
            return blob.content

    def list(self, *, principal: Principal, type_code: str | None, holder_id: str | None,
             status: str | None, page: int, per_page: int = 50) -> dict[str, Any]:
        if principal.role not in ("issuer", "admin"):
            raise Forbidden("listing licenses needs the issuer or admin role")
        issuer_code = principal.issuer_code if principal.role == "issuer" else None
        with self.container.session() as session:
            holder_ref = None
            if holder_id:
                code, _ = normalize_holder_code(holder_id, field="holder_id")
                holder = q.find_holder(session, cipher=self.container.cipher, code=code)
                if holder is None:
                    return {"data": [], "count": 0, "page": page}
                holder_ref = holder.id
            filters: dict[str, Any] = {}
            if status:
                try:
                    wanted = LicenseStatus(status)
                except ValueError:
                    raise ValidationFailed(
                        f"status must be one of {', '.join(x.value for x in LicenseStatus)}",
                        field="status") from None
                # expiry is computed (SPEC §4): expired means a stored valid or suspended
                # license whose valid_to is before today in Asia/Shanghai
                today = _today(self.container.clock.now())
                if wanted is LicenseStatus.EXPIRED:
                    filters = {"statuses": ("valid", "suspended"), "expired_on": today}
                elif wanted in (LicenseStatus.VALID, LicenseStatus.SUSPENDED):
                    filters = {"statuses": (wanted.value,), "not_expired_on": today}
                else:
                    filters = {"statuses": (wanted.value,)}
            result = q.list_licenses(session, issuer_code=issuer_code, type_code=type_code,
                                     holder_id=holder_ref, page=page, per_page=per_page,
                                     **filters)
            views = [self.view(session, r) for r in result.rows]
        return {"data": views, "count": result.count, "page": page}

    # -- lifecycle ----------------------------------------------------------------------------

    def transition(self, license_id: str, action: Action, *, reason: str | None,
                   note: str | None, principal: Principal) -> dict[str, Any]:
        """revoke / suspend / resume. Raises InvalidTransition, ValidationFailed, Forbidden."""
        validate_reason(action, reason)
        if note is not None and (not isinstance(note, str) or len(note) > 500):
            raise ValidationFailed("note must be at most 500 characters", field="note")
        container = self.container
        with container.session() as session, session.begin():
            row = q.lock_license(session, license_id=license_id)
            self._authorize(row, principal, write=True)
            at = container.clock.now()
            current = effective_status(row.status, row.valid_to, at)
            row.status = next_status(action, current).value
            row.status_reason, row.updated_at = reason, at
            append_event(session, at=at, actor=principal.actor, action=f"license.{action.value}",
                         subject=row.id, reason=reason, detail={"note": note} if note else {})
            return self.view(session, row)

    def amend(self, license_id: str, *, changes: Any, reason: str | None, note: str | None,
              principal: Principal) -> dict[str, Any]:
        """A new version with changed data; the old one becomes ``superseded``.

        Two-phase like minting: validate, render and seal without holding a lock; then lock
        the old version, check it is still the current valid one, and record both together.

        Raises InvalidTransition (not valid, or amended concurrently), ValidationFailed,
        Forbidden, SealKeyRevoked.
        """
        validate_reason(Action.AMEND, reason)
        if not isinstance(changes, Mapping) or not changes:
            raise ValidationFailed("data must be an object with the changed fields", field="data")
        if note is not None and len(note) > 500:
            raise ValidationFailed("note must be at most 500 characters", field="note")
        container = self.container
        at = container.clock.now()
        with container.session() as session:
            old = q.get_license(session, license_id=license_id)
            self._authorize(old, principal, write=True)
            next_status(Action.AMEND, effective_status(old.status, old.valid_to, at))
            ltype = catalog_q.get_license_type(session, code=old.type_code)
            fields = catalog_q.field_specs(ltype)
            validate_license_data(fields, changes, partial=True)
            data = validate_license_data(fields, {**old.data, **dict(changes)})
            holder = session.get(Holder, old.holder_id)
            assert holder is not None
            holder_code = q.holder_code(holder, cipher=container.cipher)
            co_holders = q.decrypt_co_holders(old.co_holders_enc, cipher=container.cipher)
            issuer_name = catalog_q.get_issuer(session, code=old.issuer_code).name
            session.expunge_all()
        current = LicenseIdentifier.parse(old.id)
        ident = current.with_version(current.version + 1)
        pdf = self._render_and_seal(
            ident=ident, ltype=ltype, issuer_name=issuer_name, holder_code=holder_code,
            holder_name=old.holder_name, holder_type=holder.code_type, co_holders=co_holders,
            license_number=old.license_number, data=data, valid_from=old.valid_from,
            valid_to=old.valid_to, at=at, scan=None)
        with container.session() as session, session.begin():
            locked = q.lock_license(session, license_id=license_id)
            next_status(Action.AMEND, effective_status(locked.status, locked.valid_to, at))
            if locked.successor_id is not None:
                raise InvalidTransition("this version was amended concurrently; amend the "
                                        f"current version {locked.successor_id}")
            view = self._record(session, ident=ident, holder_code=holder_code,
                                holder_type=holder.code_type, holder_name=locked.holder_name,
                                co_holders=co_holders, license_number=locked.license_number,
                                data=data, valid_from=locked.valid_from,
                                valid_to=locked.valid_to, pdf=pdf, at=at, actor=principal.actor,
                                predecessor=locked,
                                detail={"reason": reason, "note": note,
                                        "changed": sorted(changes)})
            locked.status, locked.successor_id = LicenseStatus.SUPERSEDED.value, str(ident)
            locked.status_reason, locked.updated_at = reason, at
            session.flush()
            return view


def license_service(container: Container) -> LicenseService:
    return container.singleton("licenses", lambda: LicenseService(container))
