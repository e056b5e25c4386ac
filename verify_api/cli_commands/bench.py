"""``elicense bench``."""

from __future__ import annotations

import click

from ..cli import cli, emit


def _human(r: dict) -> str:  # type: ignore[type-arg]
    iss = r["issuance"]
    w = iss["workers"]
    ratios = r["ratios"]
    return "\n".join([
        f"raw ECDSA P-256 verify          {r['ecdsa_p256_verify']['per_second']:>10.0f} /s",
        f"QR token verify                 {r['qr_token_verify']['per_second']:>10.0f} /s"
        f"   ({ratios['qr_verify_vs_raw_ecdsa']:.2f} × raw ECDSA)",
        f"stock pyHanko PDF validation    {r['pyhanko_validate']['per_second']:>10.1f} /s",
        f"elicense PDF verification       {r['elicense_verify_pdf']['per_second']:>10.1f} /s"
        f"   ({ratios['elicense_pdf_vs_stock_pyhanko']:.2f} × stock pyHanko)",
        f"issuance, 1 worker              {iss['per_second_1_worker']:>10.1f} /s",
        f"issuance, {w} workers             {iss[f'per_second_{w}_workers']:>10.1f} /s"
        f"   ({ratios[f'issuance_{w}_workers_vs_1']:.2f} × 1 worker)",
    ])


@cli.command("bench")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--seconds", default=2.0, show_default=True, help="time per measurement")
@click.option("--issue-count", default=12, show_default=True, help="licenses per worker")
def bench(as_json: bool, seconds: float, issue_count: int) -> None:
    """Benchmarks of SPEC §9 on a throw-away installation, measured in one run."""
    from ..services.bench import BenchOptions, run_benchmarks
    progress = (lambda _m: None) if as_json else (lambda m: click.echo(f"… {m}", err=True))
    results = run_benchmarks(BenchOptions(seconds=seconds, issue_count=issue_count),
                             progress=progress)
    emit(results, as_json=as_json, human=_human)
