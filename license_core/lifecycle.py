"""License lifecycle: states, reason codes and the allowed transitions.

Expiry is computed, not stored: a license is ``expired`` from 00:00 Asia/Shanghai on the day
after ``valid_to``. The stored status is one of the other four.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time, timedelta

from .clock import CHINA_TZ, utc
from .errors import InvalidTransition, ValidationFailed

__all__ = ["LicenseStatus", "Action", "REASONS", "validate_reason", "next_status",
           "effective_status", "expiry_instant"]


class LicenseStatus(str, enum.Enum):
    VALID = "valid"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


class Action(str, enum.Enum):
    ISSUE = "issue"
    SUSPEND = "suspend"
    RESUME = "resume"
    REVOKE = "revoke"
    AMEND = "amend"


REASONS: dict[Action, frozenset[str]] = {
    Action.REVOKE: frozenset({"cancelled", "revoked", "issued_in_error"}),
    Action.SUSPEND: frozenset({"investigation", "holder_request", "other"}),
    Action.RESUME: frozenset({"investigation_closed", "holder_request", "other"}),
    Action.AMEND: frozenset({"correction", "change", "renewal", "other"}),
}

# (action, effective status before) -> stored status after
_TRANSITIONS: dict[tuple[Action, LicenseStatus], LicenseStatus] = {
    (Action.SUSPEND, LicenseStatus.VALID): LicenseStatus.SUSPENDED,
    (Action.RESUME, LicenseStatus.SUSPENDED): LicenseStatus.VALID,
    (Action.REVOKE, LicenseStatus.VALID): LicenseStatus.REVOKED,
    (Action.REVOKE, LicenseStatus.SUSPENDED): LicenseStatus.REVOKED,
    (Action.REVOKE, LicenseStatus.EXPIRED): LicenseStatus.REVOKED,
    (Action.AMEND, LicenseStatus.VALID): LicenseStatus.SUPERSEDED,
}


def validate_reason(action: Action, reason: str | None) -> str:
    """Raises ValidationFailed (field ``reason``) for a reason code the action does not know."""
    allowed = REASONS[action]
    if reason not in allowed:
        raise ValidationFailed(
            f"reason for {action.value} must be one of {', '.join(sorted(allowed))}",
            field="reason")
    return reason


def next_status(action: Action, current: LicenseStatus) -> LicenseStatus:
    """The stored status after ``action``; raises InvalidTransition when not allowed."""
    try:
        return _TRANSITIONS[(action, current)]
    except KeyError:
        raise InvalidTransition(
            f"cannot {action.value} a license that is {current.value}") from None


def expiry_instant(valid_to: date) -> datetime:
    """The instant (UTC) from which a license valid to ``valid_to`` is expired."""
    return utc(datetime.combine(valid_to + timedelta(days=1), time(0, 0), tzinfo=CHINA_TZ))


def effective_status(stored: LicenseStatus | str, valid_to: date | None,
                     at: datetime) -> LicenseStatus:
    status = LicenseStatus(stored)
    if status in (LicenseStatus.VALID, LicenseStatus.SUSPENDED) and valid_to is not None:
        if utc(at) >= expiry_instant(valid_to):
            return LicenseStatus.EXPIRED
    return status
