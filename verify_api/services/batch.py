"""Batch conversion of paper stock: a CSV manifest of rows becomes sealed e-licenses (SPEC §3).

The mechanism, in the order it runs:

1. lock ``--out`` (one run per output directory) and remove stray ``*.tmp`` files that a killed
   run left behind;
2. read the whole manifest (a file that cannot be read as a manifest is refused as a whole);
   rows with a bad or repeated ``row_id`` fail at once;
3. convert every other row — in this process (``workers=1``) or in spawned worker processes,
   each with a container of its own, rows sent in chunks. A row is minted with the idempotency
   key ``convert:<row_id>`` of client ``cli:<issuer>``, so a rerun *replays* rows that are
   already in the database instead of minting them again; a license number that was already
   issued for the type and issuer under another row id is refused (``duplicate_license_number``);
4. after the database commit, the PDF is written as ``<out>/<row_id>.pdf`` (temporary file +
   rename), so a file that exists is always complete; a replay re-writes a missing or
   different PDF from the database;
5. each finished row is appended to ``results.journal.csv`` as it completes; at the end
   ``results.csv`` (one line per manifest row, manifest order) replaces it atomically.

Killing the process at any point and rerunning therefore finishes the batch with nothing minted
twice and no half-written file. A bad row never stops the batch: its error code and message go
into ``results.csv``.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import multiprocessing
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from directory import catalog as catalog_q
from directory import licenses as licenses_q
from license_core.errors import (DuplicateLicenseNumber, LicenseError, MalformedDocument,
                                 UploadTooLarge, ValidationFailed)
from license_core.schema import FieldSpec, FieldType

from ..container import Container
from ..deps import Principal
from ..settings import Settings
from .licenses import MintRequest, license_service

__all__ = ["ConvertSpec", "ConvertReport", "RowOutcome", "ManifestRow", "InvalidManifest",
           "BatchBusy", "read_manifest", "run_convert", "write_atomic", "cli_principal",
           "error_summary", "RESULT_COLUMNS"]

REQUIRED_COLUMNS = ("row_id", "type_code", "holder_id", "holder_name")
OPTIONAL_COLUMNS = ("license_number", "scan", "valid_from", "valid_to")
DATA_PREFIX = "data."
RESULT_COLUMNS = ("row_id", "status", "license_id", "pdf", "error_code", "error")
RESULTS_NAME = "results.csv"
JOURNAL_NAME = "results.journal.csv"
LOCK_NAME = ".convert.lock"
_MALFORMED = "\0malformed"  # a key no header column can have
_ROW_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TRUE = {"true", "1", "yes", "y", "是", "t"}
_FALSE = {"false", "0", "no", "n", "否", "f"}

class InvalidManifest(ValidationFailed):
    code = "invalid_manifest"
    title = "Invalid manifest"


class BatchBusy(LicenseError):
    code = "batch_in_progress"
    title = "Another conversion is writing to this output directory"


def cli_principal(issuer_code: str) -> Principal:
    """The CLI acting as a department (the operator on the service's own machine)."""
    return Principal(kind="client", role="issuer", subject=f"cli:{issuer_code}",
                     issuer_code=issuer_code, name="cli")


def write_atomic(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` so that the file is either absent or complete."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# -- inputs and outputs ---------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRow:
    line: int  # line number in the manifest (header = 1)
    row_id: str
    cells: Mapping[str, str]


@dataclass(frozen=True)
class ConvertSpec:
    manifest: Path
    scans: Path
    out: Path
    issuer_code: str | None = None
    workers: int = 1
    chunk_size: int | None = None  # default: small enough to spread the work evenly


@dataclass(frozen=True)
class RowOutcome:
    row_id: str
    status: str  # issued | failed
    license_id: str = ""
    pdf: str = ""  # file name under --out
    error_code: str = ""
    error: str = ""
    minted: bool = False  # False for an issued row: replayed from an earlier run
    pdf_written: bool = False

    @classmethod
    def failed(cls, row_id: str, exc: LicenseError) -> "RowOutcome":
        return cls(row_id=row_id, status="failed", error_code=exc.code,
                   error=exc.diagnostics())

    def csv_row(self) -> list[str]:
        return [self.row_id, self.status, self.license_id, self.pdf, self.error_code,
                self.error]


@dataclass
class ConvertReport:
    manifest: str
    out: str
    results: str
    workers: int
    rows: int = 0
    issued: int = 0
    failed: int = 0
    minted: int = 0  # newly minted in this run
    replayed: int = 0  # already minted by an earlier run of the manifest
    pdfs_written: int = 0
    stray_tmp_removed: int = 0
    elapsed_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    outcomes: list[RowOutcome] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def count(self, outcome: RowOutcome) -> None:
        if outcome.status == "issued":
            self.issued += 1
            self.minted += outcome.minted
            self.replayed += not outcome.minted
        else:
            self.failed += 1
            self.errors[outcome.error_code] = self.errors.get(outcome.error_code, 0) + 1
        self.pdfs_written += outcome.pdf_written

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "outcomes"}
        out["errors"] = dict(self.errors)
        out["ok"] = self.ok
        out["rate_per_s"] = round(self.minted / self.elapsed_s, 2) if self.elapsed_s else None
        return out


def read_manifest(path: Path) -> list[ManifestRow]:
    """Raises InvalidManifest (not UTF-8 CSV, missing or unknown columns, no rows)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InvalidManifest(f"cannot read {path}: {exc.strerror}", field="manifest") from exc
    except UnicodeDecodeError as exc:
        raise InvalidManifest(f"{path} is not UTF-8 (byte {exc.start})",
                              field="manifest") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InvalidManifest(f"{path} is empty", field="manifest") from None
    except csv.Error as exc:
        raise InvalidManifest(f"{path}: {exc}", field="manifest") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidManifest(f"the header lacks column(s) {', '.join(missing)}",
                              field="manifest")
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS
               and not (c.startswith(DATA_PREFIX) and len(c) > len(DATA_PREFIX))]
    if unknown:
        raise InvalidManifest(f"unknown column(s) {', '.join(unknown)}; data fields are "
                              "named data.<field key>", field="manifest")
    if len(set(header)) != len(header):
        raise InvalidManifest("a column appears twice in the header", field="manifest")
    rows = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # blank line
            cells = dict(zip(header, values))
            if len(values) != len(header):  # the row is refused on its own, not the file
                cells[_MALFORMED] = f"{len(values)} cells for {len(header)} columns"
            rows.append(ManifestRow(line=reader.line_num, row_id=cells.get("row_id", "").strip(),
                                    cells=cells))
    except csv.Error as exc:
        raise InvalidManifest(f"{path} line {reader.line_num}: {exc}", field="manifest") from exc
    if not rows:
        raise InvalidManifest(f"{path} has no rows", field="manifest")
    return rows


# -- one row --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TypeInfo:
    fields: dict[str, FieldSpec]
    issuer_codes: tuple[str, ...]


def _convert_value(spec: FieldSpec, raw: str) -> Any:
    """Manifest cells are text; the field type says what they mean. Raises ValidationFailed."""
    where = f"data.{spec.key}"
    value = raw.strip() if spec.type is not FieldType.TEXT else raw
    if spec.type is FieldType.INTEGER:
        try:
            return int(value.replace(",", ""))
        except ValueError:
            raise ValidationFailed(f"{spec.label} must be a whole number, not {raw!r}",
                                   field=where) from None
    if spec.type is FieldType.NUMBER:
        text = value.replace(",", "")
        try:
            return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
        except ValueError:
            raise ValidationFailed(f"{spec.label} must be a number, not {raw!r}",
                                   field=where) from None
    if spec.type is FieldType.BOOLEAN:
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValidationFailed(f"{spec.label} must be true or false, not {raw!r}", field=where)
    return value  # string, text, enum, date: the schema validates them


class RowConverter:
    """Converts manifest rows with one container (one per process)."""

    def __init__(self, container: Container, *, scans: Path, out: Path,
                 issuer_code: str | None) -> None:
        self.container = container
        self.scans = scans.resolve()
        self.out = out
        self.issuer_code = issuer_code
        self._types: dict[str, _TypeInfo] = {}
        self._warm: set[str] = set()

    def _type(self, code: str) -> _TypeInfo:
        info = self._types.get(code)
        if info is None:
            with self.container.session() as session:
                row = catalog_q.get_license_type(session, code=code)
                info = _TypeInfo({f.key: f for f in catalog_q.field_specs(row)},
                                 tuple(row.issuer_codes))
            self._types[code] = info
        return info

    def _warm_up(self, issuer_code: str) -> None:
        """Build the department's seal identity and image before its first mint.

        The seal's validation time is taken when ``mint`` starts, and the embedded OCSP
        response is made when signing; first-use work inside that window (a new department's
        seal key, the seal image) can make the response "too recent" for the validator.
        """
        if issuer_code in self._warm:
            return
        from ..platform.sealing import sealing_service
        sealing = sealing_service(self.container)
        sealing.identity(issuer_code)
        sealing.seal_image(issuer_code)
        self._warm.add(issuer_code)

    def _issuer(self, info: _TypeInfo) -> str:
        if self.issuer_code:
            return self.issuer_code  # mint() refuses a type the department does not issue
        if len(info.issuer_codes) == 1:
            return info.issuer_codes[0]
        raise ValidationFailed(f"several departments issue this type; pass --issuer, one of "
                               f"{', '.join(info.issuer_codes)}", field="issuer",
                               code="issuer_required")

    def _scan(self, name: str) -> bytes:
        path = (self.scans / name).resolve()
        if not path.is_relative_to(self.scans):
            raise ValidationFailed(f"scan {name!r} is outside --scans", field="scan")
        limit = self.container.settings.max_upload_bytes
        try:
            size = path.stat().st_size
            if size > limit:
                raise UploadTooLarge(f"scan {name} is {size} bytes, more than {limit}",
                                     field="scan")
            content = path.read_bytes()
        except FileNotFoundError:
            raise ValidationFailed(f"scan file {name!r} not found under {self.scans}",
                                   field="scan", code="scan_not_found") from None
        except OSError as exc:
            raise MalformedDocument(f"cannot read scan {name!r}: {exc.strerror}",
                                    field="scan") from exc
        if not content:
            raise MalformedDocument(f"scan {name!r} is empty", field="scan")
        return content

    def request(self, row: ManifestRow) -> tuple[MintRequest, str]:
        """The mint request of a row and its issuer. Raises LicenseError."""
        cells = {k: v for k, v in row.cells.items() if v is not None}
        if _MALFORMED in cells:
            raise ValidationFailed(f"manifest line {row.line} is malformed: {cells[_MALFORMED]}",
                                   field="manifest", code="invalid_row")
        type_code = cells.get("type_code", "").strip()
        info = self._type(type_code)
        issuer = self._issuer(info)
        data: dict[str, Any] = {}
        for column, raw in cells.items():
            if not column.startswith(DATA_PREFIX) or raw == "":
                continue
            key = column[len(DATA_PREFIX):]
            spec = info.fields.get(key)
            data[key] = _convert_value(spec, raw) if spec else raw  # unknown: schema refuses
        body: dict[str, Any] = {
            "type_code": type_code,
            "holder": {"id": cells.get("holder_id", "").strip(),
                       "name": cells.get("holder_name", "")},
            "data": data}
        for column in ("license_number", "valid_from", "valid_to"):
            if cells.get(column, "").strip():
                body[column] = cells[column].strip()
        scan_name = cells.get("scan", "").strip()
        scan = self._scan(scan_name) if scan_name else None
        return MintRequest.from_body(body, scan=scan), issuer

    def convert(self, row: ManifestRow) -> RowOutcome:
        try:
            return self._convert(row)
        except LicenseError as exc:
            return RowOutcome.failed(row.row_id, exc)
        except Exception as exc:  # a bug or an infrastructure failure: recorded, batch goes on
            return RowOutcome(row_id=row.row_id, status="failed", error_code="internal_error",
                              error=f"{type(exc).__name__}: {exc}"[:500])

    def _convert(self, row: ManifestRow) -> RowOutcome:
        request, issuer = self.request(row)
        self._warm_up(issuer)
        principal = cli_principal(issuer)
        key = (principal.subject, f"convert:{row.row_id}")
        service = license_service(self.container)
        try:
            result = service.mint(request, issuer_code=issuer, actor=principal.actor,
                                  idempotency=key)
        except DuplicateLicenseNumber:
            # A process of a killed run may have minted this very row meanwhile (same key):
            # that is a replay, not a duplicate.
            with self.container.session() as session:
                record = licenses_q.get_idempotency(session, client_id=key[0], key=key[1])
            if record is None:
                raise
            result = service.mint(request, issuer_code=issuer, actor=principal.actor,
                                  idempotency=key)
        license_id = result.license["id"]
        name = f"{row.row_id}.pdf"
        path = self.out / name
        pdf = service.pdf(license_id, principal=principal)
        written = False
        if result.created or not _same_content(path, pdf):
            write_atomic(path, pdf)
            written = True
        return RowOutcome(row_id=row.row_id, status="issued", license_id=license_id, pdf=name,
                          minted=result.created, pdf_written=written)


def _same_content(path: Path, content: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).digest() == hashlib.sha256(content).digest()
    except FileNotFoundError:
        return False


# -- worker processes ------------------------------------------------------------------------

_WORKER: RowConverter | None = None


def _watch_parent(parent: int) -> None:
    """A worker whose parent was killed stops within a second instead of running on."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _worker_init(settings: Settings, scans: Path, out: Path, issuer_code: str | None,
                 parent: int) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    from ..container import build_container
    from ..wiring import wire
    container = wire(build_container(settings))
    _WORKER = RowConverter(container, scans=scans, out=out, issuer_code=issuer_code)


def _worker_chunk(rows: list[ManifestRow]) -> list[RowOutcome]:
    assert _WORKER is not None, "worker not initialised"
    return [_WORKER.convert(row) for row in rows]


def _chunks(rows: Sequence[ManifestRow], size: int) -> Iterator[list[ManifestRow]]:
    for start in range(0, len(rows), size):
        yield list(rows[start:start + size])


def _in_pool(container: Container, spec: ConvertSpec, rows: Sequence[ManifestRow],
             chunk: int) -> Iterator[RowOutcome]:
    context = multiprocessing.get_context("spawn")  # no inherited engines, locks or threads
    pool = ProcessPoolExecutor(
        max_workers=spec.workers, mp_context=context, initializer=_worker_init,
        initargs=(container.settings, spec.scans, spec.out, spec.issuer_code, os.getpid()))
    pending: dict[Future[list[RowOutcome]], list[ManifestRow]] = {}
    todo = _chunks(rows, chunk)
    in_hand: list[ManifestRow] = []  # taken from todo, not yet pending
    try:
        for part in todo:  # a bounded window keeps memory flat for any manifest size
            in_hand = part
            pending[pool.submit(_worker_chunk, part)] = part
            in_hand = []
            if len(pending) >= spec.workers * 3:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                part = pending.pop(future)
                try:
                    outcomes = future.result()
                except BrokenProcessPool:
                    pending[future] = part  # reported below with the other unfinished rows
                    raise
                except Exception as exc:  # the chunk could not even run (pickling...)
                    for row in part:
                        yield RowOutcome(row_id=row.row_id, status="failed",
                                         error_code="internal_error",
                                         error=f"{type(exc).__name__}: {exc}"[:500])
                else:
                    yield from outcomes
                in_hand = next(todo, [])
                if in_hand:
                    pending[pool.submit(_worker_chunk, in_hand)] = in_hand
                    in_hand = []
    except BrokenProcessPool:
        # A worker died (killed, out of memory). What it committed is in the database: the
        # rerun replays it. Everything not reported is marked so that results.csv is complete.
        lost = [r for part in pending.values() for r in part] + in_hand
        lost += [r for part in todo for r in part]
        error = LicenseError("a worker process died; rerun the same command to resume",
                             code="worker_died")
        for row in lost:
            yield RowOutcome.failed(row.row_id, error)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- the run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _out_lock(out: Path) -> Iterator[None]:
    with open(out / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchBusy(f"another `elicense convert` is writing to {out}; wait for it "
                            "or use another --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _checked_ids(rows: Sequence[ManifestRow]) -> tuple[list[ManifestRow], dict[int, RowOutcome]]:
    """Rows to convert, and outcomes (by position) of rows whose row_id is unusable."""
    seen: set[str] = set()
    good, bad = [], {}
    for i, row in enumerate(rows):
        if not _ROW_ID.match(row.row_id):
            bad[i] = RowOutcome.failed(row.row_id, ValidationFailed(
                f"row_id {row.row_id!r} (line {row.line}) must be 1-100 letters, digits, "
                ". _ - (it names the output PDF)", field="row_id", code="invalid_row_id"))
        elif row.row_id in seen:
            bad[i] = RowOutcome.failed(row.row_id, ValidationFailed(
                f"row_id {row.row_id} appears again on line {row.line}; row ids must be unique",
                field="row_id", code="duplicate_row_id"))
        else:
            seen.add(row.row_id)
            good.append(row)
    return good, bad


def run_convert(container: Container, spec: ConvertSpec, *,
                on_start: Callable[[int], None] | None = None,
                on_row: Callable[[RowOutcome, ConvertReport], None] | None = None
                ) -> ConvertReport:
    """Convert a manifest; see the module docstring for the steps.

    Raises InvalidManifest (the file as a whole), UnknownIssuer (``--issuer``), BatchBusy.
    Row problems are never raised: they are outcomes in the report and in results.csv.
    """
    started = time.monotonic()
    spec.out.mkdir(parents=True, exist_ok=True)
    report = ConvertReport(manifest=str(spec.manifest), out=str(spec.out),
                           results=str(spec.out / RESULTS_NAME), workers=spec.workers)
    with _out_lock(spec.out):
        for stray in spec.out.glob("*.tmp"):  # left by a killed run: never complete
            stray.unlink(missing_ok=True)
            report.stray_tmp_removed += 1
        rows = read_manifest(spec.manifest)
        if spec.issuer_code:
            with container.session() as session:
                catalog_q.get_issuer(session, code=spec.issuer_code)
        report.rows = len(rows)
        if on_start:
            on_start(len(rows))
        good, outcomes_at = _checked_ids(rows)
        by_id: dict[str, RowOutcome] = {}
        with open(spec.out / JOURNAL_NAME, "w", encoding="utf-8", newline="") as handle:
            journal = csv.writer(handle)
            journal.writerow(RESULT_COLUMNS)

            def record(outcome: RowOutcome) -> None:
                journal.writerow(outcome.csv_row())
                handle.flush()
                report.count(outcome)
                if on_row:
                    on_row(outcome, report)

            for outcome in outcomes_at.values():
                record(outcome)
            for outcome in _outcomes(container, spec, good):
                by_id[outcome.row_id] = outcome
                record(outcome)
        for i, row in enumerate(rows):
            report.outcomes.append(outcomes_at.get(i) or by_id[row.row_id])
        _write_results(spec.out / RESULTS_NAME, report.outcomes)
        (spec.out / JOURNAL_NAME).unlink(missing_ok=True)
    report.elapsed_s = round(time.monotonic() - started, 3)
    return report


def _outcomes(container: Container, spec: ConvertSpec,
              rows: Sequence[ManifestRow]) -> Iterable[RowOutcome]:
    if not rows:
        return ()
    if spec.workers <= 1:
        converter = RowConverter(container, scans=spec.scans, out=spec.out,
                                 issuer_code=spec.issuer_code)
        return (converter.convert(row) for row in rows)
    chunk = spec.chunk_size or max(1, min(16, len(rows) // (spec.workers * 8)))
    container.dispose()  # no pooled connection is shared with (or held across) the workers
    return _in_pool(container, spec, rows, chunk)


def _write_results(path: Path, outcomes: Iterable[RowOutcome]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(RESULT_COLUMNS)
    for outcome in outcomes:
        writer.writerow(outcome.csv_row())
    write_atomic(path, buffer.getvalue().encode("utf-8"))


def error_summary(report: ConvertReport) -> str:
    return ", ".join(f"{code} × {n}" for code, n in Counter(report.errors).most_common())
