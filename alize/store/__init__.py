"""Persistence with SQLAlchemy 2; the schema lives in numbered Alembic migrations."""
