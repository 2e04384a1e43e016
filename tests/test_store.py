"""Storage on SQLite and PostgreSQL: keys hashed and rotated, migrations, usage records."""

import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from alize.store import accounts, inflight, usage
from alize.store.accounts import Limits, NewKey
from alize.store.db import Database, alembic_config, migrate
from tests.databases import postgres_database
from tests.server import alize


def _all_text(db: Database) -> str:
    """Every value of every table, as text: where a leaked secret would show."""
    parts = []
    with db.engine.connect() as conn:
        for table in inspect(db.engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


def test_key_secret_never_stored_in_clear_sqlite_file(tmp_path):
    secret = alize("keys", "create", "--name", "ci", "--data-dir", str(tmp_path)).stdout.strip()
    assert secret.startswith("alz-") and len(secret) >= 40
    for path in tmp_path.glob("alize.db*"):
        assert secret.encode() not in path.read_bytes()
    rows = sqlite3.connect(tmp_path / "alize.db").execute("select name, prefix, secret_hash from api_keys").fetchall()
    assert rows[0][0] == "ci" and secret.startswith(rows[0][1]) and rows[0][2] != secret


def test_keys_hashed_found_and_unique(db):
    info, secret = accounts.create_key(db, NewKey("ci", limits=Limits(rpm=5, monthly_budget_nano=10**9)))
    assert secret not in _all_text(db)
    found = accounts.find_key(db, secret)
    assert found.id == info.id and found.limits.rpm == 5 and found.workspace.name == "default"
    assert accounts.find_key(db, secret + "x") is None and accounts.find_key(db, "") is None
    secrets = {accounts.create_key(db, NewKey("k"))[1] for _ in range(30)}
    assert len(secrets) == 30


def test_rotation_grace_and_revocation(db):
    info, old = accounts.create_key(db, NewKey("rot"))
    _, new = accounts.rotate_key(db, info.id, timedelta(seconds=60))
    assert new != old
    assert accounts.find_key(db, new).id == info.id
    assert accounts.find_key(db, old).id == info.id  # still in its grace period
    assert old not in _all_text(db) and new not in _all_text(db)
    _, newest = accounts.rotate_key(db, info.id, timedelta(0))
    assert accounts.find_key(db, new) is None and accounts.find_key(db, old) is None
    assert accounts.find_key(db, newest).id == info.id
    accounts.revoke_key(db, info.id)
    assert accounts.find_key(db, newest).revoked_at is not None  # found, but marked revoked
    with pytest.raises(accounts.AccountError):
        accounts.rotate_key(db, info.id, timedelta(0))


def test_workspaces_own_keys_and_limits(db):
    ws = accounts.create_workspace(db, "team-a", Limits(tpm=1000))
    with pytest.raises(accounts.AccountError):
        accounts.create_workspace(db, "team-a")
    key, secret = accounts.create_key(db, NewKey("a1", workspace="team-a", models=("mistral-tiny",)))
    found = accounts.find_key(db, secret)
    assert found.workspace.id == ws.id and found.workspace.limits.tpm == 1000 and found.models == ("mistral-tiny",)
    accounts.update_workspace_limits(db, "team-a", {"tpm": None, "rpm": 7})
    assert accounts.find_key(db, secret).workspace.limits == Limits(rpm=7)
    assert [k.id for k in accounts.list_keys(db, "team-a")] == [key.id]
    with pytest.raises(accounts.AccountError):
        accounts.create_key(db, NewKey("x", workspace="nope"))


def _usage(request_id: str, key, day: datetime, cost: int = 5, status: int = 200) -> usage.Usage:
    return usage.Usage(request_id, day, key.workspace.id, key.id, "mistral-tiny", "chat.completions", status,
                       prompt_tokens=10, completion_tokens=4, cached_tokens=2, cost_nano=cost, latency_ms=12)


def test_usage_recorded_once_and_reported(db):
    key, _ = accounts.create_key(db, NewKey("u"))
    now = datetime.now(UTC)
    assert usage.record(db, _usage("r1", key, now)) is True
    assert usage.record(db, _usage("r1", key, now, cost=999)) is False  # the same request: ignored
    usage.record(db, _usage("r2", key, now - timedelta(days=40), cost=7))
    usage.record(db, _usage("r3", key, now, status=429, cost=0))
    assert usage.records_with_id(db, "r1") == 1
    since = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert usage.month_totals(db, "key", key.id, since) == (28, 5)
    rows = usage.report(db, date.today() - timedelta(days=60), now.date(), "day")
    assert sum(r.requests for r in rows) == 3 and sum(r.errors for r in rows) == 1
    by_model = usage.report(db, now.date(), now.date(), "model")
    assert len(by_model) == 1 and by_model[0].group == "mistral-tiny" and by_model[0].cost_nano == 5


def _revisions(db: Database) -> list[str]:
    scripts = ScriptDirectory.from_config(alembic_config(db.engine))
    return [r.revision for r in reversed(list(scripts.walk_revisions()))]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrations_fresh_and_upgrade_from_first(kind, tmp_path):
    def check(url_a: str, url_b: str) -> None:
        old = Database(url_a)
        revisions = _revisions(old)
        assert revisions[0] == "0001_api_keys" and len(revisions) >= 2
        migrate(old.engine, revisions[0])
        with old.engine.begin() as conn:  # a key made by the first schema
            conn.execute(text("INSERT INTO api_keys (id, name, prefix, secret_hash, created_at) "
                              "VALUES ('k1', 'old', 'alz-x', :h, :t)"),
                         {"h": accounts.hash_secret("alz-old-secret"), "t": datetime.now(UTC)})
        for rev in revisions[1:]:
            migrate(old.engine, rev)
        migrate(old.engine)  # idempotent
        kept = accounts.find_key(old, "alz-old-secret")
        assert kept is not None and kept.workspace.name == "default"
        fresh = Database(url_b)
        fresh.migrate()
        for db in (old, fresh):
            assert {"api_keys", "workspaces", "usage"} <= set(inspect(db.engine).get_table_names())
        columns = {t: {c["name"] for c in inspect(old.engine).get_columns(t)} for t in ("api_keys", "usage")}
        assert columns == {t: {c["name"] for c in inspect(fresh.engine).get_columns(t)} for t in columns}
        old.close()
        fresh.close()

    if kind == "sqlite":
        check(f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    else:
        with postgres_database() as a, postgres_database() as b:
            check(a, b)


def test_stream_progress_is_held_updated_and_reclaimed_once(db):
    key, _ = accounts.create_key(db, NewKey("streams"))
    now = datetime.now(UTC)

    def progress(request_id: str, tokens: int) -> usage.Usage:
        return usage.Usage(request_id, now, key.workspace.id, key.id, "mistral-tiny", "chat.completions", 499, 5,
                           tokens)

    inflight.hold(db, "a", now + timedelta(seconds=10), [progress("s1", 3), progress("s2", 4)])
    inflight.hold(db, "a", now + timedelta(seconds=10), [progress("s1", 7)])  # s1 goes on; s2 only renewed
    assert inflight.count(db) == 2
    assert inflight.reclaim(db, now, 499) == []  # the lease holds
    reclaimed = inflight.reclaim(db, now + timedelta(seconds=11), 499)  # server a died
    assert sorted((u.id, u.completion_tokens) for u in reclaimed) == [("s1", 7), ("s2", 4)]
    assert inflight.reclaim(db, now + timedelta(seconds=11), 499) == [] and inflight.count(db) == 0
