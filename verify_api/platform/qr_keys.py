"""The platform's QR signing keys (SPEC §7): one active key, retired keys kept for verification.

Keys live in the database (role ``qr_signing``, private keys encrypted like every platform key),
so every worker sees the same keyring. A process keeps a snapshot and re-reads it when it is
older than ``refresh_interval`` or when a token names a key id the snapshot does not know
(another worker may just have rotated). Rotation never breaks a printed license: the old key is
marked ``retired`` and stays in the trust list, and its certificate's ``not_after`` only bounds
when it may *sign*.

Key statuses in the database: ``active`` (signs; published), ``retired`` (published, verifies
old tokens, never signs). Any other status (an operator's ``withdrawn``) is neither published
nor used.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from directory import pki_store as q
from license_core.clock import utc
from license_core.errors import ConfigurationError
from license_core.oids import CertificateRole
from license_core.qr_token import QrKey, QrKeyStatus, kid_for_certificate, kid_to_text

from ..container import Container
from .pki import _decrypt_key, _encrypt_key, platform_pki

__all__ = ["QR_ROLE", "QrSigningKey", "QrKeyring", "qr_keyring"]

QR_ROLE = CertificateRole.QR_SIGNING.value
_PUBLISHED = {QrKeyStatus.ACTIVE.value, QrKeyStatus.RETIRED.value}
# A flood of tokens with random key ids must not turn into a flood of database reads.
_MISS_RELOAD_INTERVAL_S = 1.0


@dataclass(frozen=True)
class QrSigningKey:
    """The key that signs new QR tokens, with its certificate and COSE key id."""

    label: str
    kid: bytes
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def kid_text(self) -> str:
        return kid_to_text(self.kid)


@dataclass(frozen=True)
class _Entry:
    label: str
    status: str
    created_at: datetime
    certificate: x509.Certificate
    kid: bytes


@dataclass(frozen=True)
class _Snapshot:
    loaded_at: float  # time.monotonic()
    entries: tuple[_Entry, ...]
    published: dict[bytes, QrKey]  # kid -> key, for every active or retired key

    @property
    def fingerprint(self) -> tuple[tuple[str, str], ...]:
        return tuple((e.label, e.status) for e in self.entries)


class QrKeyring:
    """All QR signing keys of the installation (see the module docstring)."""

    def __init__(self, container: Container, *,
                 refresh_interval: timedelta = timedelta(seconds=5)) -> None:
        self._container = container
        self._interval = refresh_interval.total_seconds()
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._private: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._last_miss_reload = 0.0

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> _Snapshot:
        with self._container.session() as session:
            rows = q.keys_for_role(session, role=QR_ROLE)
            entries = []
            for row in rows:
                cert = x509.load_der_x509_certificate(row.certificate_der)
                entries.append(_Entry(row.label, row.status, utc(row.created_at), cert,
                                      kid_for_certificate(cert)))
        published = {e.kid: QrKey.from_certificate(e.certificate, status=QrKeyStatus(e.status))
                     for e in entries if e.status in _PUBLISHED}
        return _Snapshot(time.monotonic(), tuple(entries), published)

    def _current(self, *, force: bool = False) -> _Snapshot:
        snapshot = self._snapshot
        if force or snapshot is None or time.monotonic() - snapshot.loaded_at > self._interval:
            with self._lock:
                snapshot = self._load()
                self._snapshot = snapshot
        return snapshot

    def refresh(self) -> None:
        """Re-read the keys from the database now."""
        self._current(force=True)

    def fingerprint(self) -> tuple[tuple[str, str], ...]:
        """Labels and statuses of the keys: changes whenever a key is added or retired."""
        return self._current().fingerprint

    # -- use ----------------------------------------------------------------------------------

    def active(self, at: datetime | None = None) -> QrSigningKey:
        """The key that signs now: the newest ``active`` key whose certificate covers ``at``.

        Raises:
            ConfigurationError: no active key is valid at ``at`` (rotate with
                ``elicense keys rotate-qr``).
        """
        when = utc(at) if at is not None else self._container.clock.now()
        candidates = [e for e in self._current().entries if e.status == QrKeyStatus.ACTIVE.value
                      and e.certificate.not_valid_before_utc <= when
                      <= e.certificate.not_valid_after_utc]
        if not candidates:
            raise ConfigurationError(
                f"no active QR signing key is valid at {when.isoformat()}: run "
                "`elicense keys rotate-qr`")
        entry = max(candidates, key=lambda e: (e.created_at, e.label))
        return QrSigningKey(entry.label, entry.kid, entry.certificate,
                            self._private_key(entry.label))

    def _private_key(self, label: str) -> ec.EllipticCurvePrivateKey:
        key = self._private.get(label)
        if key is None:
            with self._container.session() as session:
                row = q.get_key(session, label=label)
                if row is None or row.key_enc is None:
                    raise ConfigurationError(f"the QR signing key {label!r} has no stored key")
                key = _decrypt_key(self._container, label, row.key_enc)
            with self._lock:
                self._private[label] = key
        return key

    def verification_keys(self) -> dict[bytes, QrKey]:
        """Every published key (``active`` or ``retired``) by key id, as the trust list has them."""
        return dict(self._current().published)

    def verification_keys_for(self, kid: bytes) -> dict[bytes, QrKey]:
        """:meth:`verification_keys`, re-read first when ``kid`` is unknown (another worker may
        have rotated a moment ago); such re-reads happen at most once a second."""
        keys = self.verification_keys()
        if kid in keys:
            return keys
        now = time.monotonic()
        if now - self._last_miss_reload >= _MISS_RELOAD_INTERVAL_S:
            self._last_miss_reload = now
            self.refresh()
            keys = self.verification_keys()
        return keys

    # -- rotation -----------------------------------------------------------------------------

    def rotate(self, *, validity: timedelta = timedelta(days=730)) -> tuple[QrSigningKey,
                                                                               list[str]]:
        """A new EC P-256 key with a QR_SIGNING certificate from the platform CA becomes the
        active key; the keys active until now become ``retired`` (still published).

        Returns the new key and the labels it retired.

        Raises:
            ValidationFailed: the CA cannot issue (e.g. its own validity ends too soon).
        """
        container = self._container
        now = container.clock.now()
        label = f"qr-{now.strftime('%Y%m%d%H%M%S%f')}"
        key = ec.generate_private_key(ec.SECP256R1())
        cert = platform_pki(container).ca.issue_qr_signing_certificate(
            key.public_key(), name="elicense QR Signing", label=label, validity=validity)
        retired: list[str] = []
        with container.session() as session, session.begin():
            for row in q.keys_for_role(session, role=QR_ROLE):
                if row.status == QrKeyStatus.ACTIVE.value:
                    q.set_key_status(session, label=row.label, status=QrKeyStatus.RETIRED.value)
                    retired.append(row.label)
            latest = max((utc(r.created_at) for r in q.keys_for_role(session, role=QR_ROLE)),
                         default=now)
            # created_at orders the keys: keep the new one strictly last even on a fixed clock.
            q.add_key(session, label=label, role=QR_ROLE, issuer_code=None,
                      certificate_der=cert.public_bytes(serialization.Encoding.DER),
                      key_enc=_encrypt_key(container, label, key), pkcs11_ref=None,
                      status=QrKeyStatus.ACTIVE.value,
                      at=max(now, latest + timedelta(microseconds=1)))
        with self._lock:
            self._private[label] = key
        self.refresh()
        return QrSigningKey(label, kid_for_certificate(cert), cert, key), retired


def qr_keyring(container: Container) -> QrKeyring:
    """The process-wide keyring of a container (built on first use)."""
    return container.singleton("qr_keyring", lambda: QrKeyring(container))
