"""Shared-corpus fixtures: where the corpus is, its manifest, a bounded fact gatherer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def corpus_dir() -> Path | None:
    env = os.environ.get("ELICENSE_CORPUS")
    path = Path(env) if env else REPO.parent / "shared" / "corpus"
    return path if (path / "manifest.json").is_file() else None


def manifest_entries() -> list[dict]:
    root = corpus_dir()
    if root is None:
        return []
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


def missing_corpus_reason() -> str:
    return ("shared corpus not found: set ELICENSE_CORPUS or place it at "
            f"{REPO.parent / 'shared' / 'corpus'}")


@pytest.fixture(scope="session")
def corpus_root() -> Path:
    root = corpus_dir()
    if root is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing_corpus_reason())
        pytest.skip(missing_corpus_reason())
    return root


@pytest.fixture(scope="session")
def fact_gatherer():
    from signing.pdf_facts import BoundedFactGatherer

    gatherer = BoundedFactGatherer(workers=1)
    yield gatherer
    gatherer.close()
