"""Persistence: SQLAlchemy models and keyword-only query functions, migrations, catalog I/O."""
