from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from directory.events import append_event, verify_chain
from directory.models import Event

T0 = datetime(2026, 11, 27, 1, 2, 3, 456789, tzinfo=timezone.utc)


def _append(session, n):  # type: ignore[no-untyped-def]
    for i in range(n):
        append_event(session, at=T0 + timedelta(seconds=i), actor="issuer:x", action="issue",
                     subject=f"license-{i}", reason=None, detail={"i": i, "名": "值"})


def test_chain_verifies_and_links(db_session) -> None:  # type: ignore[no-untyped-def]
    base = verify_chain(db_session).events
    _append(db_session, 5)
    report = verify_chain(db_session)
    assert report.ok and report.events == base + 5


def test_altered_row_is_named(db_session) -> None:  # type: ignore[no-untyped-def]
    _append(db_session, 4)
    last = verify_chain(db_session).events
    target = last - 1
    db_session.execute(update(Event).where(Event.seq == target).values(subject="forged"))
    db_session.expire_all()
    report = verify_chain(db_session)
    assert not report.ok and report.broken_at == target
    assert "altered" in (report.problem or "")


def test_deleted_row_is_detected(db_session) -> None:  # type: ignore[no-untyped-def]
    _append(db_session, 3)
    last = verify_chain(db_session).events
    db_session.query(Event).filter(Event.seq == last - 1).delete()
    db_session.expire_all()
    report = verify_chain(db_session)
    assert not report.ok and report.broken_at == last - 1
