"""The one error hierarchy of elicense.

Every error has a stable machine ``code``; ``field`` names the offending input (``holder.id``,
``data.<key>``) where there is one. HTTP status codes are *not* decided here: the table lives
in ``verify_api/errors.py``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LicenseError",
    "ValidationFailed",
    "InvalidIdentifier",
    "InvalidHolderCode",
    "NotFound",
    "UnknownLicenseType",
    "UnknownIssuer",
    "UnknownLicense",
    "Unauthorized",
    "Forbidden",
    "Conflict",
    "IdempotencyConflict",
    "DuplicateLicenseNumber",
    "InvalidTransition",
    "InvalidCatalog",
    "MalformedDocument",
    "DocumentLocked",
    "UploadTooLarge",
    "SealKeyRevoked",
    "DependencyUnavailable",
    "RateLimited",
    "ConfigurationError",
    "InvalidCertificate",
    "CertificateRejected",
    "ChallengeFailed",
]


class LicenseError(Exception):
    """Root of every elicense error. ``code`` is stable and machine-readable."""

    code: str = "license_error"
    title: str = "elicense error"

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code is not None:
            self.code = code
        self.extra = dict(extra or {})

    def diagnostics(self) -> str:
        """A human explanation with what to do, for CLI output and logs."""
        where = f" (field {self.field})" if self.field else ""
        return f"{self.title}{where}: {self.detail}"


class ValidationFailed(LicenseError):
    code = "validation_error"
    title = "Invalid input"


class InvalidIdentifier(ValidationFailed):
    code = "invalid_identifier"
    title = "Invalid license identifier"


class InvalidHolderCode(ValidationFailed):
    code = "invalid_holder_code"
    title = "Invalid holder code"


class InvalidCatalog(ValidationFailed):
    code = "invalid_catalog"
    title = "Invalid catalog file"


class NotFound(LicenseError):
    code = "not_found"
    title = "Not found"


class UnknownLicenseType(NotFound):
    code = "unknown_license_type"
    title = "Unknown license type"


class UnknownIssuer(NotFound):
    code = "unknown_issuer"
    title = "Unknown issuer"


class UnknownLicense(NotFound):
    code = "unknown_license"
    title = "Unknown license"


class Unauthorized(LicenseError):
    code = "unauthorized"
    title = "Missing or invalid credentials"


class Forbidden(LicenseError):
    code = "forbidden"
    title = "Not allowed"


class Conflict(LicenseError):
    code = "conflict"
    title = "Conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"
    title = "Idempotency-Key reused with a different request"


class DuplicateLicenseNumber(Conflict):
    code = "duplicate_license_number"
    title = "License number already issued"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "Lifecycle transition not allowed"


class DocumentLocked(Conflict):
    code = "document_locked"
    title = "Document is certified with no changes allowed"


class SealKeyRevoked(Conflict):
    code = "seal_key_revoked"
    title = "The department's seal certificate is revoked"


class MalformedDocument(ValidationFailed):
    code = "malformed_document"
    title = "Malformed document"


class UploadTooLarge(LicenseError):
    code = "upload_too_large"
    title = "Upload too large"


class RateLimited(LicenseError):
    code = "rate_limited"
    title = "Too many requests"


class DependencyUnavailable(LicenseError):
    code = "dependency_unavailable"
    title = "A dependency is unavailable"


class ConfigurationError(LicenseError):
    code = "configuration_error"
    title = "Configuration error"


class InvalidCertificate(ValidationFailed):
    code = "invalid_certificate"
    title = "Invalid certificate"


class CertificateRejected(Unauthorized):
    """A well-formed certificate that may not log in: untrusted, revoked, expired, not a holder's.

    ``extra["reason"]`` says which (``untrusted``, ``revoked``, ``expired``, ``not_yet_valid``,
    ``unknown``, ``not_holder``, ``bad_holder_code``)."""

    code = "certificate_rejected"
    title = "Certificate not accepted for login"


class ChallengeFailed(Unauthorized):
    """Proof of possession failed: unknown, expired or already used nonce, or a bad signature."""

    code = "challenge_failed"
    title = "Login challenge failed"
