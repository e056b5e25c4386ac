from datetime import date, datetime, timezone

import pytest

from license_core.errors import InvalidTransition, ValidationFailed
from license_core.lifecycle import (Action, LicenseStatus, effective_status, next_status,
                                    validate_reason)


def test_expiry_starts_at_midnight_shanghai_after_valid_to() -> None:
    valid_to = date(2026, 11, 26)
    # 2026-11-26 15:59:59 UTC is 23:59:59 in Shanghai: still valid
    assert effective_status("valid", valid_to, datetime(2026, 11, 26, 15, 59, 59,
                                                        tzinfo=timezone.utc)) is LicenseStatus.VALID
    assert effective_status("valid", valid_to, datetime(2026, 11, 26, 16, 0, 0,
                                                        tzinfo=timezone.utc)) is LicenseStatus.EXPIRED
    assert effective_status("revoked", valid_to, datetime(2030, 1, 1, tzinfo=timezone.utc)) \
        is LicenseStatus.REVOKED


def test_transitions() -> None:
    assert next_status(Action.SUSPEND, LicenseStatus.VALID) is LicenseStatus.SUSPENDED
    assert next_status(Action.RESUME, LicenseStatus.SUSPENDED) is LicenseStatus.VALID
    assert next_status(Action.AMEND, LicenseStatus.VALID) is LicenseStatus.SUPERSEDED
    for action, state in [(Action.RESUME, LicenseStatus.VALID),
                          (Action.SUSPEND, LicenseStatus.REVOKED),
                          (Action.AMEND, LicenseStatus.SUPERSEDED),
                          (Action.REVOKE, LicenseStatus.SUPERSEDED),
                          (Action.AMEND, LicenseStatus.EXPIRED)]:
        with pytest.raises(InvalidTransition):
            next_status(action, state)


def test_reason_codes() -> None:
    assert validate_reason(Action.REVOKE, "issued_in_error") == "issued_in_error"
    with pytest.raises(ValidationFailed):
        validate_reason(Action.REVOKE, "investigation")
