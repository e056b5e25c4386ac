"""The Alembic migration creates exactly the schema the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from directory.models import Base


def test_migration_matches_models(db_engine) -> None:  # type: ignore[no-untyped-def]
    with db_engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == [], f"models and migration differ; regenerate it: {differences}"
