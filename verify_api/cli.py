"""The ``elicense`` command line: the operator's tool on the service's own machine.

Exit codes: 0 success / TOTAL_PASSED, 1 TOTAL_FAILED or refused, 2 usage error, 3 INDETERMINATE.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from license_core.errors import LicenseError

from .container import Container, build_container
from .settings import Settings, get_settings

__all__ = ["main", "cli"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INDETERMINATE = 0, 1, 2, 3


def emit(data: Any, *, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(human(data) if human else json.dumps(data, ensure_ascii=False, indent=2,
                                                         default=str))


def fail(exc: LicenseError, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"code": exc.code, "title": exc.title, "detail": exc.detail,
                               "field": exc.field}, ensure_ascii=False))
    else:
        click.echo(f"error: {exc.diagnostics()}", err=True)
    sys.exit(EXIT_FAILED)


class Ctx:
    """Lazily builds the container (and installs) on first use by a command."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._container: Container | None = None

    def container(self, *, install: bool = True) -> Container:
        if self._container is None:
            from .wiring import wire
            self._container = wire(build_container(self.settings))
            if install:
                from .services.installation import ensure_installed
                ensure_installed(self._container)
        return self._container


pass_ctx = click.make_pass_decorator(Ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """elicense — 电子证照与签章核验服务 (e-license directory, issuance and verification)."""
    ctx.obj = Ctx(get_settings())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@pass_ctx
def init(ctx: Ctx, as_json: bool) -> None:
    """Create the data directory, migrate the database, build the dev PKI, load the demo catalog.

    Idempotent; safe to run concurrently against one database."""
    from .services.installation import ensure_installed
    container = ctx.container(install=False)
    report = ensure_installed(container)
    emit(report.to_dict(), as_json=as_json, human=_install_text)


def _install_text(report: dict[str, Any]) -> str:
    created = ", ".join(report["created"]) or "nothing new (already initialised)"
    return (f"elicense data directory: {report['home']}\n"
            f"database: {report['database']}\n"
            f"created: {created}\n"
            "create an API key with: elicense clients create --role admin --name ops")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@pass_ctx
def serve(ctx: Ctx, host: str, port: int, workers: int) -> None:
    """Initialise if needed, then serve HTTP."""
    import uvicorn
    from .services.installation import ensure_installed
    report = ensure_installed(ctx.container(install=False))
    click.echo(_install_text(report.to_dict()))
    click.echo(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    ctx.container().dispose()
    uvicorn.run("verify_api.wiring:create_wired_app", factory=True, host=host, port=port,
                workers=workers, log_level="info")


@cli.group()
def clients() -> None:
    """API clients (acceptance systems, departments, administrators)."""


@clients.command("create")
@click.option("--role", type=click.Choice(["admin", "issuer", "verifier"]), required=True)
@click.option("--name", required=True)
@click.option("--issuer", "issuer_code", default=None, help="issuer code (issuer role)")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def clients_create(ctx: Ctx, role: str, name: str, issuer_code: str | None,
                   as_json: bool) -> None:
    """Create an API client; its key is printed once."""
    from directory.clients import create_client
    from directory.events import append_event
    container = ctx.container()
    try:
        with container.session() as session, session.begin():
            now = container.clock.now()
            new = create_client(session, name=name, role=role, issuer_code=issuer_code, at=now)
            append_event(session, at=now, actor="cli", action="client.create",
                         subject=new.client_id, detail={"role": role, "issuer": issuer_code})
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    out = {"client_id": new.client_id, "api_key": new.api_key}
    emit(out, as_json=as_json, human=lambda d: (
        f"client {d['client_id']} ({role}) created.\nAPI key (shown once, keep it secret):\n"
        f"{d['api_key']}"))


@cli.group("directory")
def directory_group() -> None:
    """The license information directory (catalog)."""


@directory_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def directory_list(ctx: Ctx, as_json: bool) -> None:
    """List license types."""
    from directory import catalog as q
    with ctx.container().session() as session:
        data = [q.license_type_to_dict(t) for t in q.list_license_types(session)]
    emit({"data": data, "count": len(data)}, as_json=as_json, human=lambda d: "\n".join(
        f"{t['code']}  {t['name']}  ({t['defining_body']['name']}; sharing {t['sharing_level']})"
        for t in d["data"]))


@directory_group.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def directory_show(ctx: Ctx, code: str, as_json: bool) -> None:
    """Show one license type with its field schema."""
    from directory import catalog as q
    try:
        with ctx.container().session() as session:
            data = q.license_type_to_dict(q.get_license_type(session, code=code))
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    emit(data, as_json=True)


@directory_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def directory_export(ctx: Ctx, file: Path) -> None:
    """Write the whole catalog as JSON (elicense-catalog/1)."""
    from directory import catalog as q
    with ctx.container().session() as session:
        document = q.export_catalog(session)
    file.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    click.echo(f"exported {len(document['issuers'])} issuers and "
               f"{len(document['license_types'])} license types to {file}")


@directory_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def directory_import(ctx: Ctx, file: Path, as_json: bool) -> None:
    """Import a catalog file; a bad file is refused whole and changes nothing."""
    from directory import catalog as q
    from directory.events import append_event
    container = ctx.container()
    try:
        with container.session() as session, session.begin():
            known = [i.code for i in q.list_issuers(session)]
            document = q.parse_catalog(file.read_bytes(), known_issuers=known)
            now = container.clock.now()
            counts = q.import_catalog(session, document=document, at=now)
            append_event(session, at=now, actor="cli", action="catalog.import",
                         subject=file.name, detail=counts)
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    emit(counts, as_json=as_json, human=lambda d: (
        f"imported {d['issuers']} issuers and {d['license_types']} license types"))


@cli.group()
def keys() -> None:
    """Department seal certificates: list, rotate, revoke."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_list(ctx: Ctx, as_json: bool) -> None:
    """List seal keys and platform keys with their certificate status."""
    from .services.keys import list_keys
    data = list_keys(ctx.container())
    emit({"data": data, "count": len(data)}, as_json=as_json, human=lambda d: "\n".join(
        f"{k['label']:<48} {k['role']:<16} {k['status']:<10} {k['certificate_status']:<8} "
        f"until {k['not_after'][:10]}  {k['subject']}" for k in d["data"]))


@keys.command("rotate")
@click.option("--issuer", "issuer_code", required=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_rotate(ctx: Ctx, issuer_code: str, as_json: bool) -> None:
    """Give a department a new seal key and certificate (the old one is retired)."""
    from .services.keys import rotate_seal
    try:
        data = rotate_seal(ctx.container(), issuer_code=issuer_code, actor="cli")
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    emit(data, as_json=as_json, human=lambda d: (
        f"new seal certificate for {issuer_code}: serial {d['serial']} ({d['label']})"))


@keys.command("revoke")
@click.option("--issuer", "issuer_code", required=True)
@click.option("--reason", default="unspecified", show_default=True,
              help="RFC 5280 reason, e.g. key_compromise, superseded, cessation_of_operation")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_revoke(ctx: Ctx, issuer_code: str, reason: str, as_json: bool) -> None:
    """Revoke a department's current seal certificate; OCSP and CRL say so at once."""
    from .services.keys import revoke_seal
    try:
        data = revoke_seal(ctx.container(), issuer_code=issuer_code, reason=reason, actor="cli")
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    emit(data, as_json=as_json, human=lambda d: (
        f"revoked seal certificate {d['serial']} of {issuer_code} ({d['reason']}); run "
        f"`elicense keys rotate --issuer {issuer_code}` to issue a replacement"))


@cli.group()
def audit() -> None:
    """The hash-chained event log."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def audit_verify(ctx: Ctx, as_json: bool) -> None:
    """Check the event hash chain end to end."""
    from directory.events import verify_chain
    with ctx.container().session() as session:
        report = verify_chain(session)
    data = {"ok": report.ok, "events": report.events, "head": report.head,
            "broken_at": report.broken_at, "problem": report.problem}
    emit(data, as_json=as_json, human=lambda d: (
        f"audit chain OK: {d['events']} events, head {d['head'][:16]}…" if d["ok"] else
        f"audit chain BROKEN at event {d['broken_at']}: {d['problem']}"))
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@cli.group()
def certs() -> None:
    """一证通用 certificates for persons (resident ID) and enterprises (USCC)."""


@certs.command("issue")
@click.option("--holder-id", "holder_id", required=True,
              help="resident ID (GB 11643, type 111) or USCC (GB 32100, type 001)")
@click.option("--name", required=True, help="the person's or enterprise's name")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PKCS#12 file to write (mode 0600): key, certificate and chain")
@click.option("--password", required=True, help="PKCS#12 password")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def certs_issue(ctx: Ctx, holder_id: str, name: str, out: Path, password: str,
                as_json: bool) -> None:
    """Issue a 一证通用 certificate (dev CA) and write it with its key as PKCS#12."""
    from .services.certs import issue_holder_certificate, write_pkcs12
    try:
        issued = issue_holder_certificate(ctx.container(), holder_code=holder_id, name=name,
                                          password=password.encode(), actor="cli")
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    write_pkcs12(out, issued.pkcs12)
    cert = issued.certificate
    data = {"serial": issued.serial, "code_type": issued.code_type.value,
            "subject": cert.subject.rfc4514_string(), "holder": issued.holder_id,
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(), "out": str(out)}
    emit(data, as_json=as_json, human=lambda d: (
        f"issued certificate {d['serial']} ({d['subject']}), valid until {d['not_after'][:10]}\n"
        f"written to {d['out']} (PKCS#12, mode 0600)"))


@certs.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--password", default=None, help="PKCS#12 password (for .p12/.pfx files)")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def certs_verify(ctx: Ctx, file: Path, password: str | None, as_json: bool) -> None:
    """Certificate report: chain to the platform root, status, holder identity, validity.

    Exit 0 valid, 1 invalid (revoked, expired, unknown), 3 chain not trusted."""
    from signing.certificate_report import load_certificate_bundle
    from .services.certs import operator_certificate_view, verify_certificate
    try:
        cert, extra = load_certificate_bundle(file.read_bytes(),
                                              password=password.encode() if password else None)
        report = verify_certificate(ctx.container(), cert, extra_certificates=extra)
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    data = operator_certificate_view(report)
    emit(data, as_json=as_json, human=_cert_text)
    sys.exit(EXIT_OK if report.valid else
             EXIT_INDETERMINATE if not report.trusted else EXIT_FAILED)


def _cert_text(d: dict[str, Any]) -> str:
    verdict = "VALID" if d["valid"] else ("UNTRUSTED" if not d["trusted"] else "INVALID")
    holder = d["holder"]
    lines = [f"{verdict}: {d['subject']}",
             f"  chain:    {' <- '.join(d['chain'])} ({d['chain_status']})",
             f"  status:   {d['status']}" + (f" since {d['revoked_at']} ({d['revocation_reason']})"
                                             if d["revoked_at"] else ""),
             f"  validity: {d['not_before']} .. {d['not_after']}"
             + (" (expired)" if d["expired"] else " (not yet valid)" if d["not_yet_valid"]
                else ""),
             f"  role:     {d['role']}"]
    if holder:
        lines.append(f"  holder:   {holder['code_type']} {holder['code']} {holder['name']}")
    if d["issuer_code"]:
        lines.append(f"  issuer:   {d['issuer_code']}")
    if d["chain_detail"]:
        lines.append(f"  detail:   {d['chain_detail']}")
    return "\n".join(lines)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except LicenseError as exc:  # configuration problems surfacing outside a command
        click.echo(f"error: {exc.diagnostics()}", err=True)
        sys.exit(EXIT_FAILED)


# Command modules register themselves on ``cli`` (one module per area of work).
from . import cli_commands  # noqa: E402,F401
