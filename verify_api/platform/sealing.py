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
        self._signers: dict[str, LicenseSigner] = {}
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

    def _signer(self, identity: SealIdentity) -> LicenseSigner:
        signer = self._signers.get(identity.label)
        if signer is None:
            key = self._signing_key(identity)
            revocation = RevocationMaterial(crls=(self._pki.root_crl_der(),),
                                            ocsp_source=self._pki.ocsp_source)
            signer = LicenseSigner(key, timestamper=self._timestamper, chain=identity.chain,
                                   revocation=revocation, trust_roots=(self._pki.root,))
            with self._lock:
                self._signers[identity.label] = signer
        return signer

    def seal_image(self, issuer_code: str) -> Image.Image:
        image = self._images.get(issuer_code)
        if image is None:
            with self._container.session() as session:
                name = catalog_q.get_issuer(session, code=issuer_code).name
            image = render_seal_image(name)
            with self._lock:
                self._images[issuer_code] = image
        return image

    def seal_license(self, pdf: bytes, *, issuer_code: str, box: tuple[float, float, float, float],
                     at: datetime) -> bytes:
        """Certify with no changes allowed, B-LTA. Raises SealKeyRevoked, MalformedDocument."""
        identity = self.identity(issuer_code)
        spec = SealSpec(box=box, appearance_image=self.seal_image(issuer_code),
                        field_name="Seal", reason="电子证照签发", location="elicense")
        return self._signer(identity).seal_license(pdf, spec, at=at)

    def sign_document(self, pdf: bytes, *, issuer_code: str, at: datetime,
                      box: tuple[float, float, float, float] | None = None,
                      page: int = 0) -> bytes:
        """Approval signature in a new field (countersigning keeps earlier ones valid).

        Raises DocumentLocked (certified no-changes input), MalformedDocument, SealKeyRevoked.
        """
        identity = self.identity(issuer_code)
        spec = SealSpec(box=box, appearance_image=self.seal_image(issuer_code) if box else None,
                        page=page, reason="电子公文签章", location="elicense")
        return self._signer(identity).sign_document(pdf, spec, at=at)


def sealing_service(container: Container) -> SealingService:
    service = container.cache.get("sealing")
    if service is None:
        service = SealingService(container, platform_pki(container))
        container.cache["sealing"] = service
    return service
