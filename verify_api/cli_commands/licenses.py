"""``elicense issue``, the lifecycle commands and ``sign-document``: the CLI acting as a
department on the service's own machine (SPEC §3)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import click

from license_core.errors import LicenseError, ValidationFailed
from license_core.identifiers import LicenseIdentifier
from license_core.lifecycle import REASONS, Action

from ..cli import Ctx, cli, emit, fail, pass_ctx

__all__ = ["issue", "revoke", "suspend", "resume", "amend", "sign_document_command"]

_PATH_IN = click.Path(exists=True, dir_okay=False, path_type=Path)
_PATH_OUT = click.Path(dir_okay=False, path_type=Path)


def _read_json_object(path: Path, *, field: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValidationFailed(f"{path} is not a UTF-8 JSON file: {exc}", field=field) from exc
    if not isinstance(value, dict):
        raise ValidationFailed(f"{path} must hold a JSON object of field values", field=field)
    return value


def _issuer_of(id_text: str) -> tuple[str, str]:
    """The license's issuer, from its identifier (raises InvalidIdentifier)."""
    ident = LicenseIdentifier.parse(id_text)
    return str(ident), ident.issuer_code


@cli.command()
@click.option("--type", "type_code", required=True, help="license type code (21 characters)")
@click.option("--issuer", "issuer_code", default=None,
              help="issuing department; default: the only issuer of the type")
@click.option("--holder-id", required=True, help="resident ID or unified social credit code")
@click.option("--holder-name", required=True)
@click.option("--data", "data_file", required=True, type=_PATH_IN,
              help="JSON object with the type's fields")
@click.option("--scan", "scan_file", default=None, type=_PATH_IN,
              help="scan of the paper certificate (JPEG, PNG or PDF), appended to the license")
@click.option("--license-number", default=None, help="printed 证照编号 (default: generated)")
@click.option("--valid-from", default=None, help="ISO date (default: today)")
@click.option("--valid-to", default=None, help="ISO date (default: from the type's validity)")
@click.option("--out", required=True, type=_PATH_OUT, help="where to write the sealed PDF")
@click.option("--json", "as_json", is_flag=True, help="print the license as JSON")
@pass_ctx
def issue(ctx: Ctx, type_code: str, issuer_code: str | None, holder_id: str, holder_name: str,
          data_file: Path, scan_file: Path | None, license_number: str | None,
          valid_from: str | None, valid_to: str | None, out: Path, as_json: bool) -> None:
    """Mint one e-license (with --scan: from a paper certificate); prints its identifier."""
    from directory import catalog as catalog_q
    from ..services.batch import cli_principal, write_atomic
    from ..services.licenses import MintRequest, license_service
    try:
        data = _read_json_object(data_file, field="data")
        scan = scan_file.read_bytes() if scan_file else None
        container = ctx.container()
        if issuer_code is None:
            with container.session() as session:
                issuers = list(catalog_q.get_license_type(session, code=type_code).issuer_codes)
            if len(issuers) != 1:
                raise ValidationFailed(f"several departments issue {type_code}; pass --issuer, "
                                       f"one of {', '.join(issuers)}", field="issuer",
                                       code="issuer_required")
            issuer_code = issuers[0]
        body: dict[str, Any] = {"type_code": type_code,
                                "holder": {"id": holder_id, "name": holder_name}, "data": data,
                                "license_number": license_number, "valid_from": valid_from,
                                "valid_to": valid_to}
        principal = cli_principal(issuer_code)
        service = license_service(container)
        result = service.mint(MintRequest.from_body(body, scan=scan), issuer_code=issuer_code,
                              actor=principal.actor)
        pdf = service.pdf(result.license["id"], principal=principal)
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    write_atomic(out, pdf)
    if not as_json:
        click.echo(f"issued {result.license['license_number']}, sealed PDF written to {out}",
                   err=True)
    emit({**result.license, "out": str(out)}, as_json=as_json, human=lambda d: d["id"])


def _lifecycle(action: Action) -> Any:
    reasons = sorted(REASONS[action])

    @click.argument("license_id", metavar="ID")
    @click.option("--reason", required=True, type=click.Choice(reasons))
    @click.option("--note", default=None, help="free text for the event log (≤ 500 characters)")
    @click.option("--json", "as_json", is_flag=True)
    @pass_ctx
    def command(ctx: Ctx, license_id: str, reason: str, note: str | None,
                as_json: bool) -> None:
        from ..services.batch import cli_principal
        from ..services.licenses import license_service
        try:
            license_id, issuer_code = _issuer_of(license_id)
            view = license_service(ctx.container()).transition(
                license_id, action, reason=reason, note=note,
                principal=cli_principal(issuer_code))
        except LicenseError as exc:
            fail(exc, as_json=as_json)
        emit(view, as_json=as_json,
             human=lambda d: f"{d['id']}: {d['status']} ({reason})")

    command.__doc__ = {Action.REVOKE: "Revoke a license (final).",
                       Action.SUSPEND: "Suspend a valid license.",
                       Action.RESUME: "Resume a suspended license."}[action] + \
        " Acts as the license's own issuing department."
    return command


revoke = cli.command("revoke")(_lifecycle(Action.REVOKE))
suspend = cli.command("suspend")(_lifecycle(Action.SUSPEND))
resume = cli.command("resume")(_lifecycle(Action.RESUME))


@cli.command()
@click.argument("license_id", metavar="ID")
@click.option("--data", "data_file", required=True, type=_PATH_IN,
              help="JSON object with the changed fields")
@click.option("--reason", required=True, type=click.Choice(sorted(REASONS[Action.AMEND])))
@click.option("--note", default=None)
@click.option("--out", default=None, type=_PATH_OUT, help="write the new version's PDF here")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def amend(ctx: Ctx, license_id: str, data_file: Path, reason: str, note: str | None,
          out: Path | None, as_json: bool) -> None:
    """Amend a license: a new version with the changed data; the old one is superseded.

    Prints the new version's identifier."""
    from ..services.batch import cli_principal, write_atomic
    from ..services.licenses import license_service
    try:
        changes = _read_json_object(data_file, field="data")
        license_id, issuer_code = _issuer_of(license_id)
        principal = cli_principal(issuer_code)
        service = license_service(ctx.container())
        view = service.amend(license_id, changes=changes, reason=reason, note=note,
                             principal=principal)
        pdf = service.pdf(view["id"], principal=principal) if out else None
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    if out and pdf is not None:
        write_atomic(out, pdf)
    emit({**view, "out": str(out) if out else None}, as_json=as_json, human=lambda d: d["id"])


@cli.command("sign-document")
@click.argument("in_file", metavar="IN.pdf", type=_PATH_IN)
@click.option("--issuer", "issuer_code", required=True, help="the signing department")
@click.option("--out", required=True, type=_PATH_OUT)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def sign_document_command(ctx: Ctx, in_file: Path, issuer_code: str, out: Path,
                          as_json: bool) -> None:
    """Seal any PDF (e-official document, 电子公文) with a department's approval signature.

    Signing a signed document again adds a countersignature and keeps the earlier ones valid.
    An e-license (certified, no changes allowed) is refused: document_locked, exit 1."""
    from ..services.batch import write_atomic
    from ..services.documents import sign_document
    pdf = in_file.read_bytes()
    try:
        signed = sign_document(ctx.container(), pdf, issuer_code=issuer_code,
                               actor=f"issuer:cli:{issuer_code}")
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    write_atomic(out, signed)
    data = {"issuer_code": issuer_code, "out": str(out),
            "input_sha256": hashlib.sha256(pdf).hexdigest(),
            "sha256": hashlib.sha256(signed).hexdigest(), "size": len(signed)}
    emit(data, as_json=as_json,
         human=lambda d: f"signed by {issuer_code}: {d['out']} (sha256 {d['sha256'][:16]}…)")
