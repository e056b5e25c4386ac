import json
from datetime import datetime, timezone

import pytest

from directory import catalog as q
from license_core.errors import InvalidCatalog

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


def test_export_round_trips_exactly(db_url_factory) -> None:  # type: ignore[no-untyped-def]
    from directory.db import make_engine, make_session_factory
    from directory.migrate import upgrade_to_head

    exports = []
    source = q.load_demo_catalog().to_dict()
    for _ in range(2):
        engine = make_engine(db_url_factory())
        upgrade_to_head(engine)
        with make_session_factory(engine)() as session, session.begin():
            q.import_catalog(session, document=q.parse_catalog(json.dumps(source)), at=NOW)
            exports.append(q.export_catalog(session))
        engine.dispose()
        source = exports[-1]
    assert exports[0] == exports[1]
    assert q.parse_catalog(json.dumps(exports[0])).to_dict() == exports[0]
    demo = q.load_demo_catalog()
    assert len(exports[0]["license_types"]) == len(demo.license_types)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d["issuers"][0].update(code="11440300MB2C928150"), "issuers[0].code"),
    (lambda d: d["license_types"][1].update(code="bad"), "license_types[1].code"),
    (lambda d: d["license_types"][0]["fields"].append({"key": "Bad Key", "label": "x",
                                                        "type": "string"}),
     "license_types[0].fields"),
    (lambda d: d["license_types"][0].update(issuer_codes=["11440300MB2C928159", "nope"]),
     "license_types[0].issuer_codes"),
    (lambda d: d["license_types"][0].update(sharing_level="sometimes"), "license_types[0]"),
])
def test_bad_catalogs_are_refused_with_a_field(mutate, field) -> None:  # type: ignore[no-untyped-def]
    document = q.load_demo_catalog().to_dict()
    mutate(document)
    with pytest.raises(InvalidCatalog) as info:
        q.parse_catalog(json.dumps(document))
    assert info.value.field == field


def test_not_json_is_refused() -> None:
    with pytest.raises(InvalidCatalog):
        q.parse_catalog(b"\xff{not json")
