"""``elicense verify FILE.pdf [--json] [--trust ROOTS.pem]``: the SPEC §6 report.

Exit codes: 0 TOTAL_PASSED, 1 TOTAL_FAILED, 3 INDETERMINATE, 2 usage error (click).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from license_core.errors import LicenseError, ValidationFailed

from ..cli import EXIT_FAILED, EXIT_INDETERMINATE, EXIT_OK, Ctx, cli, emit, fail, pass_ctx

_EXIT_BY_INDICATION = {"TOTAL_PASSED": EXIT_OK, "TOTAL_FAILED": EXIT_FAILED,
                       "INDETERMINATE": EXIT_INDETERMINATE}


@cli.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable report (SPEC §6)")
@click.option("--trust", "trust", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM file of extra trusted root certificates (added to the platform root; "
                   "repeatable)")
@pass_ctx
def verify(ctx: Ctx, file: Path, as_json: bool, trust: tuple[Path, ...]) -> None:
    """Verify a sealed PDF (e-license or e-official document).

    Exit 0 TOTAL_PASSED, 1 TOTAL_FAILED, 3 INDETERMINATE."""
    from ..services.verification import load_trust_anchors, pdf_verifier

    anchors: list[bytes] = []
    try:
        for path in trust:
            found = load_trust_anchors(path.read_bytes())
            if not found:
                raise ValidationFailed(f"{path} holds no certificate (PEM or DER)",
                                       field="--trust")
            anchors.extend(found)
        report = pdf_verifier(ctx.container()).verify_pdf(file.read_bytes(),
                                                          extra_anchors=anchors, actor="cli")
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    data = report.to_dict()
    emit(data, as_json=as_json, human=lambda d: report_text(d, name=str(file)))
    sys.exit(_EXIT_BY_INDICATION.get(data["indication"], EXIT_FAILED))


def _verdict(ind: str, sub: str | None) -> str:
    return ind + (f" / {sub}" if sub else "")


def report_text(d: dict[str, Any], *, name: str = "") -> str:
    """A readable summary of a report dict (overall, signatures, license, failed checks)."""
    lines = [f"{name}: {_verdict(d['indication'], d['sub_indication'])}" if name
             else _verdict(d["indication"], d["sub_indication"])]
    if d.get("judged_as_elicense"):
        lines.append("  judged as an e-license")
    sigs = d.get("signatures") or []
    if not sigs:
        lines.append("  signatures: none")
    for s in sigs:
        signer = s["signer"]
        who = signer.get("subject") or "unknown signer"
        when = s.get("timestamp") or s.get("signing_time") or "no time"
        level = f" {s['pades_level']}" if s.get("pades_level") else ""
        lines.append(f"  [{s['kind']}{level}] {s['field']}: "
                     f"{_verdict(s['indication'], s['sub_indication'])}")
        lines.append(f"      signer:   {who}")
        lines.append(f"      time:     {when}")
        lines.append(f"      coverage: {s.get('coverage')}, changes after: "
                     f"{s.get('modification_level')}, intact={s['intact']} valid={s['valid']} "
                     f"trusted={s['trusted']}")
        for c in s.get("checks", ()):
            if not c["passed"]:
                lines.append(f"      FAILED {c['name']}: {c['detail']}")
    lic = d.get("license")
    if lic:
        lines.append(f"  license:  {lic['id'] or '(no identifier)'}")
        lines.append(f"      registry status: {lic['registry_status']}, data matches registry: "
                     f"{lic['data_matches_registry']}")
    failed = [c for c in d.get("checks", ()) if not c["passed"]]
    for c in failed:
        lines.append(f"  FAILED {c['name']}: {c['detail']}")
    lines.append(f"  verified at {d['verified_at']}")
    return "\n".join(lines)
