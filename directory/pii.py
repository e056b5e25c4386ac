"""Protection of holder codes: AES-GCM encryption plus a keyed HMAC index (PIPL art. 28)."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from license_core.errors import ConfigurationError

__all__ = ["HolderCodeCipher", "derive_key"]


def derive_key(secret: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"elicense/v1",
                info=purpose.encode()).derive(secret)


class HolderCodeCipher:
    """Encrypts holder codes and computes their lookup index from one installation secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ConfigurationError("the data-protection secret must be at least 16 bytes")
        self._aead = AESGCM(derive_key(secret, "holder-code-encryption"))
        self._index_key = derive_key(secret, "holder-code-index")
        self._secret = secret

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for another purpose (e.g. ``"holder-token"``) from the same secret."""
        if purpose.startswith("holder-code-"):
            raise ValueError("the holder-code keys are not handed out")
        return derive_key(self._secret, purpose)

    def index(self, code: str) -> str:
        return hmac.new(self._index_key, code.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, plaintext: bytes, *, context: bytes = b"holder") -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, *, context: bytes = b"holder") -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], context)
