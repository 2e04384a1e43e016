"""API keys are stored hashed; migrations reach the current schema."""

import sqlite3

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from alize.store import keys
from alize.store.db import Database, alembic_config, migrate
from tests.server import alize


def test_key_secret_never_stored_in_clear(tmp_path):
    secret = alize("keys", "create", "--name", "ci", "--data-dir", str(tmp_path)).stdout.strip()
    assert secret.startswith("alz-") and len(secret) >= 40
    for path in tmp_path.glob("alize.db*"):
        assert secret.encode() not in path.read_bytes()
    rows = sqlite3.connect(tmp_path / "alize.db").execute("select name, prefix, secret_hash from api_keys").fetchall()
    assert rows[0][0] == "ci" and secret.startswith(rows[0][1]) and rows[0][2] != secret
    db = Database(f"sqlite:///{tmp_path / 'alize.db'}")
    assert keys.authenticate(db, secret).name == "ci"
    assert keys.authenticate(db, secret + "x") is None
    assert keys.authenticate(db, "") is None


def test_keys_are_unique():
    secrets = set()
    db = Database("sqlite://")
    db.migrate()
    for _ in range(50):
        secrets.add(keys.create_key(db, "k")[1])
    assert len(secrets) == 50


def test_migrations_fresh_and_stepwise(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    scripts = ScriptDirectory.from_config(alembic_config(db.engine))
    revisions = [r.revision for r in reversed(list(scripts.walk_revisions()))]
    assert revisions[0] == "0001_api_keys"
    for rev in revisions:  # an upgrade from the first migration, one step at a time
        migrate(db.engine, rev)
    migrate(db.engine)  # idempotent
    assert "api_keys" in inspect(db.engine).get_table_names()
    fresh = Database(f"sqlite:///{tmp_path / 'b.db'}")
    fresh.migrate()
    assert set(inspect(fresh.engine).get_table_names()) == set(inspect(db.engine).get_table_names())
