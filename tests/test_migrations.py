"""The numbered migrations build exactly the schema store/tables.py describes, on SQLite
and on PostgreSQL: a model changed without its migration (or the other way) fails here."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from alize.store.tables import Base


def test_migrations_and_tables_agree(db):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], differences
