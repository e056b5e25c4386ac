"""``elicense convert``: batch conversion of paper stock (the engine is services/batch.py)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from license_core.errors import LicenseError

from ..cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Ctx, cli, emit, fail, pass_ctx

__all__ = ["convert"]

_PLAIN_EVERY_S = 5.0

# The manifest format (SPEC §3), shown by `elicense convert --help`.
MANIFEST_HELP = """\
Manifest: a UTF-8 CSV file with a header row. Columns:

\b
  row_id          unique per manifest (letters, digits, . _ -); the key that makes a rerun
                  resume: a row already minted is replayed, never minted twice
  type_code       license type (elicense directory list)
  holder_id       resident ID (persons) or unified social credit code (organisations)
  holder_name     the holder's name
  license_number  optional; the printed 证照编号 (unique per type and issuer; one
                  already issued is refused as duplicate_license_number)
  scan            optional; file name under --scans (JPEG, PNG or PDF of the paper
                  certificate, appended after the rendered page)
  valid_from      optional ISO date (default: today)
  valid_to        optional ISO date (default: from the type's validity period)
  data.<key>      one column per field of the type (elicense directory show CODE);
                  integers, numbers, booleans (true/false) and ISO dates are converted
                  from text; an empty cell means the field is absent

\b
Output in --out: <row_id>.pdf per issued row, and results.csv with
row_id,status(issued|failed),license_id,pdf,error_code,error — one line per manifest row
(results.journal.csv holds the rows finished so far while a run is going on)."""


@contextmanager
def _progress(enabled: bool) -> Iterator[tuple[Callable[[int], None],
                                               Callable[[Any, Any], None]]]:
    """(on_start, on_row) callbacks: a rich bar on a terminal, a line every few seconds on a
    pipe or file, all on stderr (stdout stays for the result)."""
    if not enabled:
        yield (lambda total: None), (lambda outcome, report: None)
        return
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        bar = Progress(TextColumn("converting"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("[green]{task.fields[issued]} issued[/] "
                                  "[red]{task.fields[failed]} failed[/]"),
                       TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                       console=Console(stderr=True), transient=False)
        task: list[Any] = []

        def on_start(total: int) -> None:
            task.append(bar.add_task("convert", total=total, issued=0, failed=0))

        def on_row(outcome: Any, report: Any) -> None:
            bar.update(task[0], advance=1, issued=report.issued, failed=report.failed)

        with bar:
            yield on_start, on_row
        return
    state = {"total": 0, "last": time.monotonic(), "t0": time.monotonic()}

    def plain_start(total: int) -> None:
        state["total"] = total
        click.echo(f"convert: {total} rows", err=True)

    def plain_row(outcome: Any, report: Any) -> None:
        now = time.monotonic()
        done = report.issued + report.failed
        if now - state["last"] >= _PLAIN_EVERY_S or done == state["total"]:
            state["last"] = now
            rate = done / max(now - state["t0"], 1e-9)
            click.echo(f"convert: {done}/{state['total']} rows ({report.issued} issued, "
                       f"{report.failed} failed), {rate:.1f} rows/s", err=True)

    yield plain_start, plain_row


@cli.command(epilog=MANIFEST_HELP)
@click.argument("manifest", metavar="MANIFEST.csv",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scans", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="directory of the scan files (default: the manifest's)")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="output directory: <row_id>.pdf and results.csv")
@click.option("--issuer", "issuer_code", default=None,
              help="issuing department for every row (default: the only issuer of each "
                   "row's type)")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="worker processes (each with its own database connections and signers)")
@click.option("--json", "as_json", is_flag=True, help="print a summary as JSON at the end")
@click.option("--quiet", is_flag=True, help="no progress output")
@pass_ctx
def convert(ctx: Ctx, manifest: Path, scans: Path | None, out: Path, issuer_code: str | None,
            workers: int, as_json: bool, quiet: bool) -> None:
    """Batch conversion of paper stock: every manifest row becomes a sealed e-license.

    Resumable: rerun the same command after an interruption (even kill -9) and the rows already
    minted are replayed, not minted again; missing PDFs are rewritten from the database. A bad
    row does not stop the batch; its error is in results.csv. Exit 0 when every row is issued,
    1 when any row failed, 2 when the manifest itself cannot be used."""
    from ..services.batch import ConvertSpec, InvalidManifest, error_summary, run_convert
    spec = ConvertSpec(manifest=manifest, scans=scans or manifest.parent, out=out,
                       issuer_code=issuer_code, workers=workers)
    try:
        container = ctx.container()
        with _progress(not quiet) as (on_start, on_row):
            report = run_convert(container, spec, on_start=on_start, on_row=on_row)
    except InvalidManifest as exc:
        if as_json:
            emit({"code": exc.code, "title": exc.title, "detail": exc.detail,
                  "field": exc.field}, as_json=True)
        else:
            click.echo(f"error: {exc.diagnostics()}", err=True)
        sys.exit(EXIT_USAGE)
    except LicenseError as exc:
        fail(exc, as_json=as_json)
    summary = report.to_dict()
    emit(summary, as_json=as_json, human=lambda d: "\n".join(filter(None, [
        f"{d['rows']} rows: {d['issued']} issued ({d['minted']} minted now, "
        f"{d['replayed']} already minted), {d['failed']} failed in {d['elapsed_s']:.1f} s",
        f"errors: {error_summary(report)}" if report.errors else "",
        f"results: {d['results']}"])))
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)
