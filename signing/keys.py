"""Key providers: where a signing identity's private key lives and how to get a ready signer.

A :class:`KeyProvider` hands out :class:`SigningKey` objects — a pyHanko ``Signer`` plus the
certificate chain — for a *label* (a department's seal, the platform's QR key, …). Three stores
are supported: PEM files (:class:`FileKeyProvider`), PKCS#12 bundles (:class:`Pkcs12KeyProvider`)
and PKCS#11 tokens (:class:`Pkcs11KeyProvider`, SoftHSM2 in tests).

Signers are built once per label and cached: loading a key costs more than a signature
(PITFALLS). Providers are safe to share between threads.

For tests and development, :class:`SoftHsm2Token` creates a SoftHSM2 token in a directory of
your choice and generates EC P-256 keys *inside* it (non-extractable).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.sign.signers import SimpleSigner
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore

from license_core.errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    import pkcs11

__all__ = [
    "SigningKey",
    "in_memory_signing_key",
    "KeyProvider",
    "FileKeySpec",
    "FileKeyProvider",
    "Pkcs12KeySpec",
    "Pkcs12KeyProvider",
    "Pkcs11KeyProvider",
    "Pkcs11Token",
    "SoftHsm2Token",
    "SOFTHSM2_MODULE",
    "to_asn1_certificate",
    "load_pem_chain",
]

SOFTHSM2_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def to_asn1_certificate(cert: x509.Certificate) -> asn1_x509.Certificate:
    """Convert a cryptography certificate to the asn1crypto form pyHanko works with."""
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """Parse one or more PEM certificates. Raises :class:`ConfigurationError` on bad input."""
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse PEM certificates: {exc}") from exc


@dataclass(frozen=True)
class SigningKey:
    """A ready-to-use signing identity.

    ``signer`` is a pyHanko ``Signer`` built once and meant to be reused for every signature;
    ``certificate`` is the signer's certificate and ``chain`` the issuing CAs above it
    (nearest first; the root may or may not be included).
    """

    label: str
    signer: Signer
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def full_chain(self) -> tuple[x509.Certificate, ...]:
        """The signer's certificate followed by :attr:`chain`."""
        return (self.certificate, *self.chain)


@runtime_checkable
class KeyProvider(Protocol):
    """Hands out signing keys by label. Implementations cache the signers they build."""

    def get(self, label: str) -> SigningKey:
        """The signing key for ``label``.

        Raises :class:`license_core.errors.ConfigurationError` if the label is unknown or the key
        cannot be loaded.
        """

    def labels(self) -> tuple[str, ...]:
        """The labels this provider knows."""


class _CachingProvider:
    """Shared caching: build a label's signer once, under a lock, then reuse it."""

    def __init__(self) -> None:
        self._cache: dict[str, SigningKey] = {}
        self._lock = threading.Lock()

    def get(self, label: str) -> SigningKey:
        key = self._cache.get(label)
        if key is not None:
            return key
        with self._lock:
            key = self._cache.get(label)
            if key is None:
                key = self._build(label)
                self._cache[label] = key
            return key

    def _build(self, label: str) -> SigningKey:  # pragma: no cover - abstract
        raise NotImplementedError


def _split_chain(label: str, certs: Sequence[x509.Certificate],
                 private_key: Any) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """Find the certificate matching ``private_key``; the others are the chain."""
    pub = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    for i, cert in enumerate(certs):
        cert_pub = cert.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        if cert_pub == pub:
            return cert, tuple(c for j, c in enumerate(certs) if j != i)
    raise ConfigurationError(f"no certificate matches the private key of {label!r}")


def in_memory_signing_key(label: str, private_key: Any,
                          certs: Sequence[x509.Certificate]) -> SigningKey:
    """A ready signer for a key already in memory (e.g. decrypted from the database)."""
    cert, chain = _split_chain(label, certs, private_key)
    der_key = private_key.private_bytes(serialization.Encoding.DER,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    signer = SimpleSigner(
        signing_cert=to_asn1_certificate(cert),
        signing_key=asn1_keys.PrivateKeyInfo.load(der_key),
        cert_registry=SimpleCertificateStore.from_certs([to_asn1_certificate(c) for c in chain]),
    )
    return SigningKey(label=label, signer=signer, certificate=cert, chain=chain)


@dataclass(frozen=True)
class FileKeySpec:
    """A PEM private key (PKCS#8 or traditional, optionally encrypted) and a PEM chain file
    holding the signer's certificate and its issuers (any order)."""

    key_path: Path
    chain_path: Path
    passphrase: bytes | None = None


class _SpecProvider(_CachingProvider):
    """A provider configured with one spec per label."""

    def __init__(self, keys: Mapping[str, Any]) -> None:
        super().__init__()
        self._specs = dict(keys)

    def labels(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def _spec(self, label: str) -> Any:
        spec = self._specs.get(label)
        if spec is None:
            raise ConfigurationError(f"unknown signing key {label!r}")
        return spec


class FileKeyProvider(_SpecProvider):
    """Keys in PEM files (development and small deployments; files should be mode 0600)."""

    def _build(self, label: str) -> SigningKey:
        spec: FileKeySpec = self._spec(label)
        try:
            private_key = serialization.load_pem_private_key(
                Path(spec.key_path).read_bytes(), password=spec.passphrase)
            certs = load_pem_chain(Path(spec.chain_path).read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot load signing key {label!r}: {exc}") from exc
        return in_memory_signing_key(label, private_key, certs)


@dataclass(frozen=True)
class Pkcs12KeySpec:
    path: Path
    passphrase: bytes | None = None


class Pkcs12KeyProvider(_SpecProvider):
    """Keys in PKCS#12 (``.p12`` / ``.pfx``) bundles with their certificate chain."""

    def _build(self, label: str) -> SigningKey:
        spec: Pkcs12KeySpec = self._spec(label)
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(
                Path(spec.path).read_bytes(), spec.passphrase)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot load PKCS#12 key {label!r}: {exc}") from exc
        if key is None or cert is None:
            raise ConfigurationError(f"PKCS#12 bundle for {label!r} lacks a key or certificate")
        return in_memory_signing_key(label, key, [cert, *extra])


# ---------------------------------------------------------------------------------------------
# PKCS#11
# ---------------------------------------------------------------------------------------------

# python-pkcs11 keeps one library object per module path, and SoftHSM2 reads SOFTHSM2_CONF
# once, at C_Initialize: one process can therefore use one SoftHSM2 configuration.
_PKCS11_LIBS: dict[str, tuple[Any, str | None]] = {}
_PKCS11_LOCK = threading.Lock()


def _pkcs11_lib(module_path: str, softhsm2_conf: str | None) -> Any:
    import pkcs11

    with _PKCS11_LOCK:
        known = _PKCS11_LIBS.get(module_path)
        if known is not None:
            lib, conf = known
            if softhsm2_conf is not None and conf is not None and conf != softhsm2_conf:
                raise ConfigurationError(
                    f"{module_path} is already initialised with {conf}; one SoftHSM2 "
                    "configuration per process")
            return lib
        with _env("SOFTHSM2_CONF", softhsm2_conf):
            try:
                lib = pkcs11.lib(module_path)
            except Exception as exc:  # PKCS11Error, OSError from dlopen
                raise ConfigurationError(f"cannot load PKCS#11 module {module_path}: {exc}"
                                         ) from exc
        _PKCS11_LIBS[module_path] = (lib, softhsm2_conf)
        return lib


@contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    """Set an environment variable for the duration of the block only."""
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


# PKCS#11 login state belongs to the application, not to a session: a second C_Login fails
# (USER_ALREADY_LOGGED_IN) and closing any logged-in session logs *every* session out. So we log
# in once per token with a long-lived anchor session and open all working sessions without a PIN;
# they inherit the login, and closing them logs nobody out.
_ANCHORS: dict[tuple[str, str], tuple[Any, str]] = {}


def _open_token_session(module_path: str, softhsm2_conf: str | None, token_label: str,
                        user_pin: str, *, rw: bool) -> Any:
    """A session on ``token_label`` in which the user is logged in.

    Raises :class:`ConfigurationError` for an unknown token or a wrong PIN.
    """
    import hmac

    from pkcs11.exceptions import NoSuchToken, UserAlreadyLoggedIn

    lib = _pkcs11_lib(module_path, softhsm2_conf)
    try:
        token = lib.get_token(token_label=token_label)
    except NoSuchToken as exc:
        raise ConfigurationError(
            f"no PKCS#11 token {token_label!r} (SoftHSM2 lists its tokens when the module is "
            "initialised: create every token before the first PKCS#11 use in a process)"
        ) from exc
    key = (module_path, token_label)
    with _PKCS11_LOCK:
        known = _ANCHORS.get(key)
        if known is None:
            try:
                anchor = token.open(user_pin=user_pin)
            except UserAlreadyLoggedIn:
                anchor = None  # logged in by someone else in this process; trust their login
            except Exception as exc:  # PinIncorrect, PinLocked, …
                raise ConfigurationError(
                    f"cannot log in to PKCS#11 token {token_label!r}: {exc!r}") from exc
            _ANCHORS[key] = (anchor, user_pin)
        elif not hmac.compare_digest(known[1].encode(), user_pin.encode()):
            raise ConfigurationError(f"cannot log in to PKCS#11 token {token_label!r}: wrong PIN")
    try:
        return token.open(rw=rw)
    except Exception as exc:
        raise ConfigurationError(f"cannot open PKCS#11 token {token_label!r}: {exc!r}") from exc


def _make_pkcs11_signer_class() -> type:
    from pyhanko.sign.pkcs11 import PKCS11Signer

    class _LockedPKCS11Signer(PKCS11Signer):  # type: ignore[misc]
        """A PKCS11Signer whose token operations are serialised.

        A PKCS#11 session must not run two operations at once, and pyHanko signs in an
        executor thread: concurrent seals sharing this signer would otherwise collide.
        """

        def __init__(self, *args: Any, op_lock: threading.Lock, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._op_lock = op_lock

        def _load_objects(self) -> None:
            with self._op_lock:
                super()._load_objects()
            kh = self._key_handle
            if kh is not None and not isinstance(kh, _SerialisedKey):
                self._key_handle = _SerialisedKey(kh, self._op_lock)

    return _LockedPKCS11Signer


class _SerialisedKey:
    """Wraps a python-pkcs11 key so that ``sign`` holds the session lock."""

    def __init__(self, key: Any, lock: threading.Lock) -> None:
        self._key = key
        self._lock = lock

    def sign(self, data: bytes, **kwargs: Any) -> bytes:
        with self._lock:
            return self._key.sign(data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._key, name)


class Pkcs11KeyProvider(_CachingProvider):
    """Keys held in a PKCS#11 token; the certificate is read from the token too.

    One logged-in session is opened lazily and shared by all signers of this provider; token
    operations are serialised on it. For each label the token must hold a private key and a
    certificate with that ``CKA_LABEL`` (as written by :meth:`SoftHsm2Token.generate_key` and
    :meth:`SoftHsm2Token.store_certificate`). ``ca_chain`` lists the issuing CAs to embed.
    ECDSA keys are used with the raw ECDSA mechanism (SoftHSM2 has no combined
    ECDSA-with-SHA256 mechanism).
    """

    def __init__(self, *, module_path: str = SOFTHSM2_MODULE, token_label: str, user_pin: str,
                 ca_chain: Sequence[x509.Certificate] = (), labels: Sequence[str] = (),
                 softhsm2_conf: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self._module_path = module_path
        self._token_label = token_label
        self._user_pin = user_pin
        self._ca_chain = tuple(ca_chain)
        self._labels = tuple(labels)
        self._conf = os.fspath(softhsm2_conf) if softhsm2_conf is not None else None
        self._session: Any = None
        self._op_lock = threading.Lock()

    def labels(self) -> tuple[str, ...]:
        return self._labels

    def _open_session(self) -> Any:
        if self._session is None:
            self._session = _open_token_session(self._module_path, self._conf,
                                                self._token_label, self._user_pin, rw=False)
        return self._session

    def _build(self, label: str) -> SigningKey:
        from pkcs11 import Attribute, ObjectClass

        session = self._open_session()
        with self._op_lock:
            certs = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                              Attribute.LABEL: label}))
        if len(certs) != 1:
            raise ConfigurationError(
                f"token {self._token_label!r} holds {len(certs)} certificates labelled {label!r}")
        cert = x509.load_der_x509_certificate(certs[0][Attribute.VALUE])
        is_ec = isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        signer_cls = _make_pkcs11_signer_class()
        signer = signer_cls(
            session, key_label=label, signing_cert=to_asn1_certificate(cert),
            ca_chain=[to_asn1_certificate(c) for c in self._ca_chain],
            use_raw_mechanism=is_ec, op_lock=self._op_lock)
        try:
            signer._load_objects()  # fetch the key handle now, not during the first seal
        except Exception as exc:
            raise ConfigurationError(f"no usable private key {label!r} in token: {exc}") from exc
        return SigningKey(label=label, signer=signer, certificate=cert, chain=self._ca_chain)

    def close(self) -> None:
        """Close the token session (signers handed out become unusable)."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            self._cache.clear()


# ---------------------------------------------------------------------------------------------
# SoftHSM2 helper (tests, development)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pkcs11Token:
    """A PKCS#11 token (any module: an HSM, or SoftHSM2 with its configuration file).

    Keys are generated inside the token (sensitive, non-extractable); certificates are written
    next to them under the same label, as :class:`Pkcs11KeyProvider` expects.
    """

    module_path: str
    label: str
    user_pin: str
    softhsm2_conf: str | None = None

    def _conf(self) -> str | None:
        return self.softhsm2_conf

    @contextmanager
    def session(self, *, rw: bool = True) -> Iterator[pkcs11.Session]:
        """A logged-in (read-write) session on this token."""
        sess = _open_token_session(self.module_path, self._conf(), self.label,
                                   self.user_pin, rw=rw)
        with sess:
            yield sess

    def generate_key(self, label: str) -> ec.EllipticCurvePublicKey:
        """Generate an EC P-256 key pair inside the token (private half sensitive and
        non-extractable) and return the public key so that a CA can certify it."""
        from pkcs11 import Attribute, KeyType
        from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

        with self.session() as sess:
            params = sess.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                local=True)
            key_id = label.encode()
            pub, _priv = params.generate_keypair(
                store=True, label=label, id=key_id,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                                  Attribute.SIGN: True, Attribute.TOKEN: True},
                public_template={Attribute.VERIFY: True, Attribute.TOKEN: True})
            der = encode_ec_public_key(pub)
        key = serialization.load_der_public_key(der)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def store_certificate(self, label: str, cert: x509.Certificate) -> None:
        """Write ``cert`` into the token under ``label`` (with the subject, issuer and serial
        attributes SoftHSM2 insists on; same ``CKA_ID`` as the key)."""
        from pkcs11 import Attribute, CertificateType, ObjectClass
        from pkcs11.util.x509 import decode_x509_certificate

        der = cert.public_bytes(serialization.Encoding.DER)
        attrs = decode_x509_certificate(der)
        with self.session() as sess:
            sess.create_object({
                **attrs,
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: label,
                Attribute.ID: label.encode(),
            })

    def key_provider(self, *, ca_chain: Sequence[x509.Certificate] = (),
                     labels: Sequence[str] = ()) -> Pkcs11KeyProvider:
        """A :class:`Pkcs11KeyProvider` for this token."""
        return Pkcs11KeyProvider(module_path=self.module_path, token_label=self.label,
                                 user_pin=self.user_pin, ca_chain=ca_chain, labels=labels,
                                 softhsm2_conf=self._conf())

@dataclass(frozen=True)
class SoftHsm2Token(Pkcs11Token):
    """A SoftHSM2 token living in ``directory`` (its own ``softhsm2.conf`` and token dir).

    ``SOFTHSM2_CONF`` is set only for the ``softhsm2-util`` subprocess and around the PKCS#11
    library initialisation. SoftHSM2 reads its configuration once per process, so all tokens
    used by one process must share one configuration (one ``directory``); several tokens with
    different labels can live in it.
    """

    directory: Path = Path(".")
    so_pin: str = ""

    @property
    def conf_path(self) -> Path:
        return Path(self.directory) / "softhsm2.conf"

    @staticmethod
    def available(module_path: str = SOFTHSM2_MODULE) -> bool:
        """Whether ``softhsm2-util`` and the module are installed."""
        return shutil.which("softhsm2-util") is not None and Path(module_path).exists()

    @classmethod
    def create(cls, directory: str | os.PathLike[str], *, label: str, user_pin: str,
               so_pin: str, module_path: str = SOFTHSM2_MODULE) -> SoftHsm2Token:
        """Initialise a new token in the first free slot.

        Raises :class:`ConfigurationError` if SoftHSM2 is missing or initialisation fails.
        """
        if not cls.available(module_path):
            raise ConfigurationError("SoftHSM2 (softhsm2-util and its module) is not installed")
        token = cls(module_path=module_path, label=label, user_pin=user_pin,
                    directory=Path(directory), so_pin=so_pin)
        tokendir = token.directory / "tokens"
        tokendir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not token.conf_path.exists():
            token.conf_path.write_text(
                f"directories.tokendir = {tokendir}\nobjectstore.backend = file\n"
                "log.level = ERROR\nslots.removable = false\n")
        env = {**os.environ, "SOFTHSM2_CONF": str(token.conf_path)}
        proc = subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label,
             "--pin", user_pin, "--so-pin", so_pin],
            env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ConfigurationError(f"softhsm2-util failed: {proc.stderr.strip() or proc.stdout}")
        return token

    def _conf(self) -> str | None:
        return str(self.conf_path)

