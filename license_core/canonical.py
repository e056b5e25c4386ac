"""Canonical JSON of license data (SPEC §6: UTF-8, sorted keys, no insignificant whitespace).

The canonical bytes are what the PDF embeds as the authoritative copy of the license data and
what the QR token's data digest (SPEC §7, claim ``5``) is computed over.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import ValidationFailed

__all__ = ["canonical_json", "data_digest", "DATA_DIGEST_SIZE"]

DATA_DIGEST_SIZE = 16


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` as canonical JSON: UTF-8, sorted keys, separators ``,`` and ``:``.

    Raises:
        ValidationFailed: ``obj`` holds NaN or an infinity, a non-string key, or a value JSON
            cannot represent.
    """
    _check_keys(obj)
    try:
        text = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                          allow_nan=False)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed(f"not representable as canonical JSON: {exc}") from exc
    return text.encode("utf-8")


def _check_keys(obj: Any) -> None:
    # json.dumps would turn {1: x} into {"1": x} silently: two inputs, one canonical form.
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if not isinstance(key, str):
                    raise ValidationFailed(f"JSON object keys must be strings, not {key!r}")
                stack.append(value)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def data_digest(data: dict[str, Any]) -> bytes:
    """The first 16 bytes of SHA-256 over ``canonical_json(data)``.

    Raises:
        ValidationFailed: ``data`` is not a dict or not representable as canonical JSON.
    """
    if not isinstance(data, dict):
        raise ValidationFailed("license data must be a JSON object")
    return hashlib.sha256(canonical_json(data)).digest()[:DATA_DIGEST_SIZE]
