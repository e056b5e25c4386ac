"""Department sealing: one ``LicenseSigner`` per seal key, built once and reused.

The timestamp comes from the platform TSA in-process (no HTTP round trip), revocation data from
the platform OCSP responder in-process and the root CRL, so every seal is PAdES B-LT(A) and
validates offline. Seal images are rendered once per department.
"""

from __future__ import annotations

import threading
from datetime import datetime

from PIL import Image

from converters.seal_image import render_seal_image
from directory import catalog as catalog_q
from license_core.errors import ConfigurationError
from signing.keys import Pkcs11KeyProvider, SigningKey, in_memory_signing_key
from signing.pades import LicenseSigner, RevocationMaterial, SealSpec
from signing.tsa import InProcessTimeStamper

from ..container import Container
from .pki import PlatformPKI, SealIdentity, pkcs11_token, platform_pki

__all__ = ["SealingService", "sealing_service"]


class SealingService:
    def __init__(self, container: Container, pki: PlatformPKI) -> None:
        self._container = container
        self._pki = pki
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._images: dict[str, Image.Image] = {}
        self._timestamper = InProcessTimeStamper(pki.tsa)
        self._pkcs11: Pkcs11KeyProvider | None = None

    def identity(self, issuer_code: str) -> SealIdentity:
        """The current seal identity (raises SealKeyRevoked / UnknownIssuer)."""
        return self._pki.seal_for(issuer_code)

    def _signing_key(self, identity: SealIdentity) -> SigningKey:
        if identity.pkcs11_label is not None:
            if self._pkcs11 is None:
                token = pkcs11_token(self._container.settings)
                if token is None:
                    raise ConfigurationError(
                        f"seal key {identity.label} lives in a PKCS#11 token, but no "
                        "ELICENSE_PKCS11_MODULE is configured")
                self._pkcs11 = token.key_provider(ca_chain=identity.chain)
            return self._pkcs11.get(identity.pkcs11_label)
        return in_memory_signing_key(identity.label, identity.private_key,
                                     (identity.certificate, *identity.chain))

    def _signer(self, identity: SealIdentity) -> tuple[LicenseSigner, datetime]:
        """A signer with fresh revocation material, and the signing time to use with it.

        The key is loaded once per seal key; the revocation material is current for every
        seal (a CRL frozen at start-up would go stale after a day of uptime). The signing time
        is taken after that material exists, so it is never "too recent" for the signature.
        """
        key = self._keys.get(identity.label)
        if key is None:
            key = self._signing_key(identity)
            with self._lock:
                self._keys[identity.label] = key
        revocation = RevocationMaterial(crls=(self._pki.root_crl_der(),),
                                        ocsp_source=self._pki.ocsp_source)
        signer = LicenseSigner(key, timestamper=self._timestamper, chain=identity.chain,
                               revocation=revocation, trust_roots=(self._pki.root,))
        return signer, self._container.clock.now()

    def seal_image(self, issuer_code: str) -> Image.Image:
        image = self._images.get(issuer_code)
        if image is None:
            with self._container.session() as session:
                name = catalog_q.get_issuer(session, code=issuer_code).name
            image = render_seal_image(name)
            with self._lock:
                self._images[issuer_code] = image
        return image

    def seal_license(self, pdf: bytes, *, issuer_code: str,
                     box: tuple[float, float, float, float]) -> bytes:
        """Certify with no changes allowed, B-LTA, signed now. Raises SealKeyRevoked,
        MalformedDocument."""
        identity = self.identity(issuer_code)
        spec = SealSpec(box=box, appearance_image=self.seal_image(issuer_code),
                        field_name="Seal", reason="电子证照签发", location="elicense")
        signer, now = self._signer(identity)
        return signer.seal_license(pdf, spec, at=now)

    def sign_document(self, pdf: bytes, *, issuer_code: str,
                      box: tuple[float, float, float, float] | None = None,
                      page: int = 0) -> bytes:
        """Approval signature in a new field (countersigning keeps earlier ones valid).

        Raises DocumentLocked (certified no-changes input), MalformedDocument, SealKeyRevoked.
        """
        identity = self.identity(issuer_code)
        spec = SealSpec(box=box, appearance_image=self.seal_image(issuer_code) if box else None,
                        page=page, reason="电子公文签章", location="elicense")
        signer, now = self._signer(identity)
        return signer.sign_document(pdf, spec, at=now)


def sealing_service(container: Container) -> SealingService:
    return container.singleton("sealing",
                               lambda: SealingService(container, platform_pki(container)))
