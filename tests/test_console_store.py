"""What the console stands on, on SQLite and PostgreSQL: daily roll-ups that always equal
the usage records, sessions, what a workspace admin may see, the cost comparison, the chart."""

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import case, func, select, text

from alize.console import charts
from alize.errors import Forbidden, NotFound, Unauthorized
from alize.registry import PriceComparison, ProviderPrice, Registry
from alize.services.accounts import AccountService, LimitsSpec
from alize.services.admin import AdminView
from alize.services.comparison import compare
from alize.services.console_sessions import SessionService
from alize.services.dashboard import Dashboard
from alize.services.reports import ReportService
from alize.store import accounts, console_sessions, usage
from alize.store.db import Database, migrate
from alize.store.tables import UsageRecord
from tests.databases import postgres_database


def _record(db: Database, key, moment: datetime, model: str | None = "mistral-tiny", endpoint="chat.completions",
            status=200, tokens=(10, 4), cost=5, request_id: str | None = None) -> bool:
    return usage.record(db, usage.Usage(request_id or f"r-{random.getrandbits(64):x}", moment, key.workspace.id,
                                        key.id, model, endpoint, status, prompt_tokens=tokens[0],
                                        completion_tokens=tokens[1], cached_tokens=1, cost_nano=cost, latency_ms=3))


def _from_records(db: Database, group: str, start: date, end: date) -> dict[str, tuple[int, ...]]:
    """The report computed the slow way, straight from the usage records."""
    column = {"key": UsageRecord.key_id, "workspace": UsageRecord.workspace_id}.get(group) or \
        getattr(UsageRecord, group)
    query = (select(column, func.count(), func.sum(case((UsageRecord.status >= 400, 1), else_=0)),
                    func.sum(UsageRecord.prompt_tokens), func.sum(UsageRecord.completion_tokens),
                    func.sum(UsageRecord.cached_tokens), func.sum(UsageRecord.cost_nano))
             .where(UsageRecord.day >= start.isoformat(), UsageRecord.day <= end.isoformat()).group_by(column))
    with db.session() as session:
        return {str(g or ""): tuple(int(v) for v in rest) for g, *rest in session.execute(query)}


def test_rollups_equal_the_records_however_written(db):
    """Records from many threads at once (the same roll-up rows contended), duplicates
    ignored, errors and a model-less record: every report equals the records' sums."""
    one, _ = accounts.create_key(db, accounts.NewKey("one"))
    accounts.create_workspace(db, "other")
    two, _ = accounts.create_key(db, accounts.NewKey("two", workspace="other"))
    now = datetime.now(UTC)
    plans = [(k, now - timedelta(days=d), m, e, s) for k in (one, two) for d in (0, 1, 40)
             for m in ("mistral-tiny", None) for e in ("chat.completions", "embeddings") for s in (200, 429)]
    jobs = [p for p in plans for _ in range(3)]
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda p: _record(db, p[0], p[1], p[2], p[3], p[4]), jobs))
    assert _record(db, one, now, request_id="same") is True
    assert _record(db, one, now, request_id="same", cost=999) is False  # recorded once, rolled up once
    start, end = now.date() - timedelta(days=60), now.date()
    for group in usage.GROUPS:
        rolled = {r.group: (r.requests, r.errors, r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.cost_nano)
                  for r in usage.report(db, start, end, group)}
        assert rolled == _from_records(db, group, start, end), group
    week = usage.report(db, now.date() - timedelta(days=7), end, "workspace", workspace_id=one.workspace.id)
    assert [r.group for r in week] == [one.workspace.id] and week[0].requests == 3 * 16 + 1
    assert usage.last_used(db)[one.id] >= now - timedelta(seconds=1)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_console_migration_rolls_up_existing_records(kind, tmp_path):
    def check(url: str) -> None:
        db = Database(url)
        migrate(db.engine, "0005_inflight")
        with db.engine.begin() as conn:  # an admin key and usage written by the old schema
            ws = conn.execute(text("SELECT id FROM workspaces WHERE name = 'default'")).scalar_one()
            conn.execute(text("INSERT INTO api_keys (id, name, prefix, secret_hash, created_at, workspace_id, "
                              "is_admin) VALUES ('k1', 'old-admin', 'alz-x', :h, :t, :ws, :yes)"),
                         {"h": accounts.hash_secret("alz-old-admin"), "t": datetime.now(UTC), "ws": ws, "yes": True})
            for i in range(5):
                conn.execute(text(
                    "INSERT INTO usage (id, created_at, day, workspace_id, key_id, model, endpoint, status, "
                    "prompt_tokens, completion_tokens, cached_tokens, cost_nano, latency_ms) VALUES "
                    "(:id, :t, :day, :ws, 'k1', :m, 'chat.completions', :s, 3, 2, 0, 7, 1)"),
                    {"id": f"u{i}", "t": datetime(2026, 3, 1 + i % 2, tzinfo=UTC), "day": f"2026-03-0{1 + i % 2}",
                     "ws": ws, "m": None if i == 4 else "m", "s": 500 if i == 0 else 200})
        db.migrate()
        rows = usage.report(db, date(2026, 3, 1), date(2026, 3, 31), "day")
        assert [(r.group, r.requests, r.errors, r.cost_nano) for r in rows] == [("2026-03-01", 3, 1, 21),
                                                                              ("2026-03-02", 2, 0, 14)]
        old = accounts.find_key(db, "alz-old-admin")
        assert old is not None and old.is_admin and old.admin_workspace_id is None  # still org-wide
        db.close()

    if kind == "sqlite":
        check(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        with postgres_database() as url:
            check(url)


def _views(db: Database) -> tuple[AdminView, AdminView, AccountService]:
    service = AccountService(db)
    service.create_workspace("team-a", LimitsSpec())
    service.create_workspace("team-b", LimitsSpec(monthly_tokens=1000))
    org, _ = service.create_key("org", "default", admin=True)
    scoped, _ = service.create_key("a-admin", "team-a", admin=True, admin_scoped=True)
    reports = ReportService(db)
    return AdminView(org, service, reports), AdminView(scoped, service, reports), service


def test_a_workspace_admin_sees_and_manages_only_its_workspace(db):
    org, team_a, service = _views(db)
    b_key, _ = service.create_key("b-key", "team-b")
    a_key, _ = team_a.create_key("a-key")  # in its own workspace by default
    assert a_key.workspace.name == "team-a" and not a_key.is_admin
    assert {w.name for w in team_a.workspaces()} == {"team-a"}
    assert {w.name for w in org.workspaces()} >= {"default", "team-a", "team-b"}
    assert {k.name for k in team_a.keys()} == {"a-admin", "a-key"}
    for forbidden in (lambda: team_a.key(b_key.id), lambda: team_a.revoke_key(b_key.id),
                      lambda: team_a.rotate_key(b_key.id, 0), lambda: team_a.workspace("team-b"),
                      lambda: team_a.keys("team-b"), lambda: team_a.create_key("x", "team-b"),
                      lambda: team_a.usage(workspace="team-b"), lambda: team_a.usage(key=b_key.id)):
        with pytest.raises(NotFound):
            forbidden()
    for org_only in (lambda: team_a.create_workspace("c", LimitsSpec()),
                     lambda: team_a.set_workspace_limits("team-a", {"rpm": 1}),
                     lambda: team_a.create_key("boss", admin=True)):
        with pytest.raises(Forbidden):
            org_only()
    sub_admin, _ = team_a.create_key("a-admin-2", admin=True, admin_scoped=True)
    assert sub_admin.admin_workspace_id == a_key.workspace.id
    _record(db, b_key, datetime.now(UTC))
    _record(db, a_key, datetime.now(UTC), cost=11)
    assert [r["cost_eur"] for r in team_a.usage(group_by="workspace").rows] == [11e-9]
    assert len(org.usage(group_by="workspace").rows) == 2
    assert service.get_key(team_a.revoke_key(a_key.id).id).revoked_at is not None


def test_sessions_end_when_idle_old_signed_out_or_revoked(db):
    asyncio.run(_sessions(db))


async def _sessions(db: Database) -> None:
    service = AccountService(db)
    admin, admin_secret = service.create_key("admin", admin=True)
    _, api_secret = service.create_key("api")
    sessions = SessionService(db, idle=timedelta(minutes=30), lifetime=timedelta(hours=12))
    with pytest.raises(Forbidden):
        await sessions.sign_in(api_secret)  # an ordinary key cannot sign in
    with pytest.raises(Unauthorized):
        await sessions.sign_in("alz-not-a-key")
    signed = await sessions.sign_in(admin_secret)
    assert (await sessions.resume(signed.token)).key.id == admin.id
    assert await sessions.resume("forged") is None
    with db.session() as session:  # only the token's hash is kept
        assert signed.token not in str(list(session.execute(text("SELECT * FROM console_sessions"))))
    await sessions.sign_out(signed.token)
    assert await sessions.resume(signed.token) is None
    idle = await sessions.sign_in(admin_secret)
    console_sessions.touch(db, idle.token, datetime.now(UTC) - timedelta(minutes=31))
    assert await sessions.resume(idle.token) is None
    revoked = await sessions.sign_in(admin_secret)
    service.revoke_key(admin.id)
    assert await sessions.resume(revoked.token) is None
    with pytest.raises(Unauthorized):
        await sessions.sign_in(admin_secret)


def test_budgets_and_consumption(db):
    org, team_a, service = _views(db)
    b_key, _ = service.create_key("b-key", "team-b", limits=LimitsSpec(budget_eur="0.5"))
    now = datetime.now(UTC)
    _record(db, b_key, now, tokens=(300, 100), cost=125_000_000)
    _record(db, b_key, now - timedelta(days=400), tokens=(5000, 0))  # another month: not counted
    dashboard = Dashboard(db, Registry.load().comparison)
    budgets = {(b.kind, b.name): b for b in dashboard.budgets(org)}
    assert budgets[("workspace", "team-b")].tokens == 400 and budgets[("workspace", "team-b")].tokens_share == 0.4
    assert budgets[("key", "b-key")].nano == 125_000_000 and budgets[("key", "b-key")].money_share == 0.25
    assert dashboard.budgets(team_a) == []  # team-b's budgets are not team-a's to see
    consumption = {c.name: c for c in dashboard.consumption(org)}
    assert (consumption["team-b"].requests_last_minute, consumption["team-b"].tokens_last_minute) == (1, 400)
    assert consumption["team-b"].month_tokens == 400 and consumption["team-a"].month_tokens == 0


def test_cost_comparison_is_exact():
    prices = PriceComparison(as_of="2025-07-01", source="test", currency="USD", eur_per_unit=0.5, prices=[
        ProviderPrice(provider="P", model="small", input_per_1k=0.001, output_per_1k=0.003)])
    result = compare(prices, [{"group": "m", "prompt_tokens": 2000, "completion_tokens": 1000, "cost_eur": 0.0001}])
    assert result.offers[0].input_eur_per_1k == Decimal("0.0005")
    assert result.rows[0].elsewhere == [Decimal("0.0025")]  # (2 * 0.001 + 1 * 0.003) USD * 0.5
    assert result.savings() == [Decimal("0.0024")]
    shipped = Registry.load().comparison
    assert shipped.as_of and shipped.source and len({p.provider for p in shipped.prices}) >= 4


def test_the_operator_replaces_the_price_table(tmp_path):
    config = tmp_path / "models.toml"
    config.write_text('[comparison]\nas_of = "2026-11-30"\nsource = "our contract"\n'
                      '[[comparison.prices]]\nprovider = "Acme"\nmodel = "a1"\ninput_per_1k = 0.01\noutput_per_1k = 0.02\n')
    comparison = Registry.load(config).comparison
    assert (comparison.as_of, [p.model for p in comparison.prices], comparison.currency) == ("2026-11-30", ["a1"], "EUR")


def test_the_chart_scales_to_the_period():
    series = [{"day": date(2026, 11, d), "tokens": t, "cost_eur": c} for d, t, c in ((1, 0, 0.0), (2, 1500, 0.02),
                                                                                   (3, 3000, 0.04))]
    chart = charts.daily(series)
    assert len(chart.bars) == 3 and chart.bars[0].height == 0
    assert chart.bars[2].height > chart.bars[1].height > 0
    assert chart.left_ticks[-1][1] == "5k" and chart.right_ticks[-1][1] == "€0.05"
    assert "2026-11-02: 1,500 tokens" in chart.bars[1].title
    assert charts.daily([]).bars == []


def test_any_period_reads_the_same_from_months_and_days(db):
    """Periods that start or end mid-month, span a year's end, or sit inside one month:
    whole months come from usage_monthly, the rest from usage_daily, and the sums are
    always those of the records."""
    key, _ = accounts.create_key(db, accounts.NewKey("k"))
    base = datetime(2025, 11, 20, 12, tzinfo=UTC)
    rng = random.Random(7)
    for _ in range(150):
        _record(db, key, base + timedelta(days=rng.randrange(100)), model=rng.choice(["a", "b", None]),
                cost=rng.randrange(1000), tokens=(rng.randrange(50), rng.randrange(50)))
    periods = [(date(2025, 12, 1), date(2026, 1, 31)), (date(2025, 11, 25), date(2026, 2, 3)),
               (date(2025, 12, 31), date(2026, 1, 1)), (date(2026, 1, 5), date(2026, 1, 20)),
               (date(2025, 11, 1), date(2026, 3, 31))]
    periods += [tuple(sorted((date(2025, 11, 15) + timedelta(days=rng.randrange(110)),
                              date(2025, 11, 15) + timedelta(days=rng.randrange(110))))) for _ in range(15)]
    for start, end in periods:
        for group in ("model", "workspace"):
            rolled = {r.group: (r.requests, r.errors, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
                                r.cost_nano) for r in usage.report(db, start, end, group)}
            assert rolled == _from_records(db, group, start, end), (start, end, group)


def test_periods_split_into_days_and_whole_months():
    from alize.store.rollups import _split

    assert _split(date(2026, 1, 1), date(2026, 3, 31)) == ([], ("2026-01", "2026-03"))
    assert _split(date(2025, 12, 2), date(2026, 12, 1)) == (
        [(date(2025, 12, 2), date(2025, 12, 31)), (date(2026, 12, 1), date(2026, 12, 1))], ("2026-01", "2026-11"))
    assert _split(date(2026, 2, 3), date(2026, 2, 27)) == ([(date(2026, 2, 3), date(2026, 2, 27))], None)
    assert _split(date(2026, 2, 1), date(2026, 2, 28)) == ([], ("2026-02", "2026-02"))
    assert _split(date(2026, 1, 31), date(2026, 2, 1)) == ([(date(2026, 1, 31), date(2026, 2, 1))], None)


def test_rebuilt_rollups_equal_those_kept_record_by_record(db):
    from alize.store import rollups

    key, _ = accounts.create_key(db, accounts.NewKey("k"))
    for i in range(30):
        _record(db, key, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=i * 3), status=500 if i % 7 == 0 else 200)
    kept = {g: usage.report(db, date(2026, 1, 1), date(2026, 4, 30), g) for g in usage.GROUPS}
    rollups.rebuild(db)
    assert {g: usage.report(db, date(2026, 1, 1), date(2026, 4, 30), g) for g in usage.GROUPS} == kept
