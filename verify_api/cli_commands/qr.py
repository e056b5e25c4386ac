"""``elicense verify-qr`` and ``elicense keys rotate-qr`` (SPEC §3, §7)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from license_core.errors import LicenseError

from verify_api.cli import (EXIT_FAILED, EXIT_INDETERMINATE, EXIT_OK, EXIT_USAGE, Ctx, cli,
                            emit, fail, pass_ctx)

__all__ = ["verify_qr", "keys_rotate_qr"]


@cli.command("verify-qr")
@click.argument("payload", required=False)
@click.option("--image", "image", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="decode the QR from a PNG/JPEG picture or page 1 of a PDF (150 dpi) first")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@pass_ctx
def verify_qr(ctx: Ctx, payload: str | None, image: Path | None, as_json: bool) -> None:
    """Verify a QR payload (…/v/<token> URL or bare token), or the QR in an image or PDF.

    Checks the signature against the QR keys and the license against the local registry.
    Exit 0 valid, 1 invalid (or not a QR token), 3 indeterminate."""
    from ..services.qr import qr_report_json, qr_service, decode_qr_image
    if (payload is None) == (image is None):
        click.echo("error: give either PAYLOAD or --image FILE", err=True)
        sys.exit(EXIT_USAGE)
    try:
        text = decode_qr_image(image.read_bytes()) if image is not None else payload
        assert text is not None
        report = qr_service(ctx.container()).verify(text, actor="cli")
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    emit(qr_report_json(report), as_json=as_json, human=_report_text)
    from license_core.verification import Indication
    sys.exit(EXIT_OK if report.valid else
             EXIT_INDETERMINATE if report.indication is Indication.INDETERMINATE else
             EXIT_FAILED)


def _report_text(d: dict[str, Any]) -> str:
    verdict = "VALID" if d["valid"] else f"{d['indication']} / {d['sub_indication']}"
    offline = d["offline"]
    lines = [f"{verdict}: {d['detail']}",
             f"  signature: {'ok' if offline['signature_ok'] else 'NOT ok'} "
             f"(key {offline['key_id']}, {offline['key_status'] or 'unknown key'})"]
    if d["presentation"]:
        lines.append(f"  presentation expires {d['presentation']['expires_at']}"
                     + (" (EXPIRED)" if d["presentation"]["expired"] else ""))
    lic = d["license"]
    if lic:
        lines += [f"  license:   {lic['id']} (version {lic['version']})",
                  f"  type:      {lic['type_name']} ({lic['type_code']})",
                  f"  issuer:    {lic['issuer_name']} ({lic['issuer_code']})",
                  f"  holder:    {lic['holder_name']}",
                  f"  validity:  {lic['valid_from']} .. {lic['valid_to'] or 'no end'}",
                  f"  registry:  {d['status']}"
                  + (f" ({d['status_reason']})" if d["status_reason"] else "")]
    return "\n".join(lines)


@cli.commands["keys"].command("rotate-qr")  # type: ignore[attr-defined]
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_rotate_qr(ctx: Ctx, as_json: bool) -> None:
    """Give the platform a new QR signing key; the current one is retired.

    Retired keys stay in the trust list, so printed QR codes keep verifying; new licenses and
    presentations are signed with the new key."""
    from directory.events import append_event
    from ..platform.qr_keys import qr_keyring
    container = ctx.container()
    try:
        key, retired = qr_keyring(container).rotate()
        with container.session() as session, session.begin():
            append_event(session, at=container.clock.now(), actor="cli", action="qr_key.rotate",
                         subject=key.label, detail={"kid": key.kid_text, "retired": retired})
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    data = {"label": key.label, "kid": key.kid_text,
            "not_before": key.certificate.not_valid_before_utc.isoformat(),
            "not_after": key.certificate.not_valid_after_utc.isoformat(), "retired": retired}
    emit(data, as_json=as_json, human=lambda d: (
        f"new QR signing key {d['kid']} ({d['label']}), signs until {d['not_after'][:10]}; "
        f"retired: {', '.join(d['retired']) or 'none'}"))
