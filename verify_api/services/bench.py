"""``elicense bench``: the benchmarks of SPEC §9, measured in one run on this machine.

Everything runs against a throw-away installation (temporary home, SQLite, dev PKI), so the
figures are comparable between machines and never touch an operator's data.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["run_benchmarks", "BenchOptions"]

ISSUER = "11440300MB2C928159"
BUSINESS_LICENSE = "11100000MB03271699001"


@dataclass(frozen=True)
class BenchOptions:
    seconds: float = 2.0  # time budget per measurement
    issue_count: int = 12  # licenses per issuing worker
    workers: int = os.cpu_count() or 1
    pdfs: int = 4


def _rate(func: Callable[[], Any], seconds: float, *, min_runs: int = 3) -> dict[str, float]:
    """Calls per second of ``func`` over about ``seconds`` (at least ``min_runs`` calls)."""
    runs = 0
    start = time.perf_counter()
    while True:
        func()
        runs += 1
        elapsed = time.perf_counter() - start
        if runs >= min_runs and elapsed >= seconds:
            break
    return {"per_second": runs / elapsed, "runs": runs, "seconds": elapsed}


def _holder(n: int) -> str:
    from license_core.holder_codes import uscc_check_character
    body = f"91440300MB{os.getpid() % 100:02d}{n:05d}"
    return body + uscc_check_character(body)


def _business_body(n: int) -> dict[str, Any]:
    return {"type_code": BUSINESS_LICENSE,
            "holder": {"id": _holder(n), "name": "深圳市示例科技有限公司"},
            "data": {"name": "深圳市示例科技有限公司", "entity_type": "有限责任公司",
                     "legal_representative": "张三", "registered_capital": "100万元人民币",
                     "established_on": "2020-05-01", "address": "深圳市南山区",
                     "business_scope": "软件开发"}}


def _container(home: Path):  # type: ignore[no-untyped-def]
    from ..container import build_container
    from ..services.installation import ensure_installed
    from ..settings import Settings
    from ..wiring import wire
    settings = Settings(home=home, environment="local", secret_key="bench-" + "b" * 40)
    container = wire(build_container(settings))
    ensure_installed(container)
    return container


def _issue_worker(args: tuple[str, int, int]) -> float:
    """Mint ``count`` licenses in this process; returns the seconds the minting took."""
    home, offset, count = args
    from ..services.licenses import MintRequest, license_service
    container = _container(Path(home))
    service = license_service(container)
    service.mint(MintRequest.from_body(_business_body(offset)), issuer_code=ISSUER,
                 actor="bench")  # warm: signer, fonts, seal image
    start = time.perf_counter()
    for i in range(1, count + 1):
        service.mint(MintRequest.from_body(_business_body(offset + i)), issuer_code=ISSUER,
                     actor="bench")
    elapsed = time.perf_counter() - start
    container.dispose()
    return elapsed


def _issuance(home: Path, workers: int, count: int, offset: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    jobs = [(str(home), offset + w * 10000, count) for w in range(workers)]
    start = time.perf_counter()
    with context.Pool(workers) as pool:
        pool.map(_issue_worker, jobs)
    wall = time.perf_counter() - start
    # per-worker warm-up (process start, imports) is excluded by timing inside the workers;
    # the wall-clock rate is reported too.
    return {"workers": workers, "licenses": workers * count,
            "per_second_wall": workers * count / wall}


def _worker_rate(home: Path, workers: int, count: int, offset: int) -> float:
    context = multiprocessing.get_context("spawn")
    jobs = [(str(home), offset + w * 10000, count) for w in range(workers)]
    with context.Pool(workers) as pool:
        times = pool.map(_issue_worker, jobs)
    return sum(count / t for t in times)


def run_benchmarks(options: BenchOptions = BenchOptions(),
                   progress: Callable[[str], None] = lambda _msg: None) -> dict[str, Any]:
    from license_core.canonical import data_digest
    from license_core.qr_token import QrClaims, QrKey, encode_token, kid_for_certificate, \
        verify_token
    from ..platform.pki import platform_pki
    from ..services.licenses import MintRequest, license_service
    from ..services.verification import pdf_verifier

    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory(prefix="elicense-bench-") as tmp:
        home = Path(tmp)
        container = _container(home)

        progress("raw ECDSA P-256 verify")
        key = ec.generate_private_key(ec.SECP256R1())
        message = b"x" * 200
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
        public = key.public_key()
        results["ecdsa_p256_verify"] = _rate(
            lambda: public.verify(signature, message, ec.ECDSA(hashes.SHA256())),
            options.seconds)

        progress("QR token verification")
        pki = platform_pki(container)
        qr_cert = pki.certificate("qr")
        kid = kid_for_certificate(qr_cert)
        now = container.clock.now()
        token = encode_token(QrClaims(
            license_id="1.2.156.3005.2.11100000000013338W011.11110000000021135M.20230329701.003.Y",
            issued_at=int(now.timestamp()), valid_to_day=None, holder_name_masked="张**",
            data_digest=data_digest({"a": 1})), private_key=pki.private_key("qr"), kid=kid)
        keys = {kid: QrKey(kid=kid, public_key=qr_cert.public_key(),
                           not_before=qr_cert.not_valid_before_utc,
                           not_after=qr_cert.not_valid_after_utc)}
        results["qr_token_verify"] = _rate(lambda: verify_token(token, keys=keys, at=now),
                                           options.seconds)

        progress("minting bench PDFs")
        service = license_service(container)
        ids = [service.mint(MintRequest.from_body(_business_body(900 + i)), issuer_code=ISSUER,
                            actor="bench").license["id"] for i in range(options.pdfs)]
        from ..deps import Principal
        admin = Principal(kind="client", role="admin", subject="bench")
        pdfs = [service.pdf(i, principal=admin) for i in ids]
        cycle = itertools.cycle(pdfs)

        progress("stock pyHanko validation")
        results["pyhanko_validate"] = _rate(lambda: _stock_pyhanko(next(cycle), pki.root),
                                            options.seconds)

        progress("elicense PDF verification")
        verifier = pdf_verifier(container)
        verifier.verify_pdf(pdfs[0])  # warm the worker
        results["elicense_verify_pdf"] = _rate(lambda: verifier.verify_pdf(next(cycle)),
                                               options.seconds)
        container.dispose()

        progress("issuance, 1 worker")
        one = _worker_rate(home, 1, options.issue_count, 20000)
        progress(f"issuance, {options.workers} workers")
        many = _worker_rate(home, options.workers, options.issue_count, 40000)
        results["issuance"] = {"per_second_1_worker": one,
                               f"per_second_{options.workers}_workers": many,
                               "workers": options.workers}

    ecdsa = results["ecdsa_p256_verify"]["per_second"]
    qr = results["qr_token_verify"]["per_second"]
    stock = results["pyhanko_validate"]["per_second"]
    ours = results["elicense_verify_pdf"]["per_second"]
    results["ratios"] = {
        "qr_verify_vs_raw_ecdsa": qr / ecdsa,
        "elicense_pdf_vs_stock_pyhanko": ours / stock,
        f"issuance_{options.workers}_workers_vs_1": many / one,
    }
    return results


def _stock_pyhanko(pdf: bytes, root) -> None:  # type: ignore[no-untyped-def]
    """What a plain pyHanko integration does: validate each signature, default policy."""
    import io

    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization
    anchor = asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER))
    reader = PdfFileReader(io.BytesIO(pdf))
    context = ValidationContext(trust_roots=[anchor], allow_fetching=False)
    for sig in reader.embedded_regular_signatures:
        validate_pdf_signature(sig, context)
