"""The console in real Chromium (Debian's chromium, driven by Playwright): sign-in, every
page with the figures of data this test made, keys created/rotated/revoked and used
against the API, a limit edited and enforced, batches, the playground, a workspace admin's
confined view, and no browser errors. Screenshots of every page go to docs/screenshots/."""

import os
import random
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from alize.console.render import eur
from alize.store import accounts, usage
from alize.store.db import Database
from tests.platform_helpers import EOS_BAN
from tests.server import ROOT, Server, alize, start_server

SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
CHAT = {"model": "mistral-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
        "logit_bias": EOS_BAN}


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        message = "Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does it)"
        if os.environ.get("ALIZE_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _seed_history(data_dir: Path, keys: list[str]) -> None:
    """Six weeks of recorded traffic for these keys, so that the chart has a shape."""
    db = Database(f"sqlite:///{data_dir / 'alize.db'}")
    infos = [k for k in accounts.list_keys(db) if k.name in keys]
    rng = random.Random(15)
    now = datetime.now(UTC)
    for day in range(1, 43):
        for key in infos:
            for n in range(rng.randint(2, 6)):
                model, endpoint, (p_in, p_out) = rng.choice([
                    ("mistral-small-latest", "chat.completions", (0.00025, 0.0003)),
                    ("mistral-tiny", "chat.completions", (0.00015, 0.0002)),
                    ("mistral-large-latest", "fim.completions", (0.002, 0.006)),
                    ("mistral-embed", "embeddings", (0.0001, 0.0))])
                prompt, completion = rng.randint(200, 4000), 0 if endpoint == "embeddings" else rng.randint(50, 900)
                cost = round((prompt * p_in + completion * p_out) / 1000 * 1e9)
                usage.record(db, usage.Usage(f"seed-{key.name}-{day}-{n}", now - timedelta(days=day, hours=n),
                                             key.workspace.id, key.id, model, endpoint,
                                             429 if n == 5 else 200, prompt, completion, 0, cost, 40))
    db.close()


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _need_chromium()
    data = tmp_path_factory.mktemp("console")
    d = ["--data-dir", str(data)]
    alize("workspaces", "create", "team-a", "--monthly-tokens", "2000000", "--budget-eur", "0.5", *d)
    alize("workspaces", "create", "team-b", *d)
    secrets = {
        "org": alize("keys", "create", "--name", "ops-admin", "--admin", *d).stdout.strip(),
        "b-admin": alize("keys", "create", "--name", "team-b-admin", "--admin", "--workspace", "team-b",
                         *d).stdout.strip(),
        "app-a": alize("keys", "create", "--name", "app-a", "--workspace", "team-a", "--budget-eur", "0.2",
                       *d).stdout.strip(),
        "app-b": alize("keys", "create", "--name", "app-b", "--workspace", "team-b", *d).stdout.strip(),
    }
    alize("keys", "create", "--name", "<script>alert(1)</script>", "--workspace", "team-a", *d)
    _seed_history(data, ["app-a", "app-b"])
    server = start_server(data, create_keys=False)
    server.key, server.admin_key = secrets["app-a"], secrets["org"]
    server.secrets = secrets  # type: ignore[attr-defined]
    for key in ("app-a", "app-b"):
        with server.client(secrets[key]) as client:
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(console_server: Server) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A browser page that records every console error, page error and dialog."""

    def __init__(self, browser: object, url: str, viewport: dict[str, int] = WIDE):
        self.context = browser.new_context(viewport=viewport, base_url=url)  # type: ignore[attr-defined]
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def on_dialog(dialog: object) -> None:
            self.dialogs.append(dialog.message)  # type: ignore[attr-defined]
            dialog.accept()  # type: ignore[attr-defined]

        self.page.on("dialog", on_dialog)

    def sign_in(self, key: str) -> None:
        self.page.goto("/console/")
        assert self.page.url.endswith("/console/sign-in")
        self.page.fill("#key", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector).strip()

    def close(self) -> None:
        assert self.errors == [], self.errors
        self.context.close()


@pytest.fixture(scope="module")
def org_tab(browser: object, console_server: Server) -> Iterator[Tab]:
    tab = Tab(browser, console_server.url)
    tab.sign_in(console_server.admin_key)
    yield tab
    tab.close()


def _admin(server: Server, key: str | None = None) -> httpx.Client:
    return server.client(key or server.admin_key)


def _euros(value: float) -> str:
    return eur(value)  # the console's own format (the figure compared is the API's)


def _count(value: int) -> str:
    return f"{value:,}".replace(",", "\u202f")


def test_usage_page_shows_the_admin_api_figures(org_tab: Tab, console_server: Server):
    page = org_tab.page
    assert page.url.endswith("/console/") and "Usage" in page.title()
    with _admin(console_server) as admin:
        total = admin.get("/admin/v1/usage").json()["total"]
        by_key = {r["name"]: r for r in admin.get("/admin/v1/usage", params={"group_by": "key"}).json()["data"]}
    assert total["requests"] > 100  # the seeded weeks and today's requests
    assert org_tab.text("#total-requests") == _count(total["requests"])
    assert org_tab.text("#total-tokens") == _count(total["prompt_tokens"] + total["completion_tokens"])
    assert org_tab.text("#total-cost") == _euros(total["cost_eur"])
    assert page.locator("svg.chart rect.bar").count() == 31  # one per day of the default period
    key_rows = page.locator("table[data-breakdown=key] tbody tr")
    assert key_rows.filter(has_text="app-a").inner_text().split("\t")[1].strip() == _count(by_key["app-a"]["requests"])
    assert page.locator("#budgets").inner_text().count("%") >= 2  # team-a's tokens and euros, app-a's euros
    org_tab.shot("usage")
    csv_link = page.locator("a.download").first.get_attribute("href")
    download = page.request.get(csv_link)
    assert download.ok and download.text().startswith("day,name,requests")
    page.fill("input[name=start]", (datetime.now(UTC).date() - timedelta(days=6)).isoformat())
    page.click(".filters button")
    page.wait_for_load_state()
    assert page.locator("svg.chart rect.bar").count() == 7


def test_cost_comparison(org_tab: Tab, console_server: Server):
    org_tab.page.goto("/console/costs")
    with _admin(console_server) as admin:
        total = admin.get("/admin/v1/usage").json()["total"]
    assert org_tab.text("#total-here") == _euros(total["cost_eur"])
    rows = org_tab.page.locator("#comparison tbody tr")
    assert rows.count() == 4 and "gpt-4o-mini" in org_tab.text("#comparison thead")
    assert "as of 2025-07-01" in org_tab.text(".lede")
    org_tab.shot("costs")


def test_keys_created_rotated_and_revoked_in_the_console(org_tab: Tab, console_server: Server):
    page = org_tab.page
    page.goto("/console/keys")
    assert "<script>alert(1)</script>" in org_tab.text("#keys")  # shown as text, run never
    page.fill("#create-key input[name=name]", "made-in-browser")
    page.select_option("#create-key select[name=workspace]", "team-a")
    page.check("#create-key input[value=mistral-tiny]")
    page.fill("#create-key input[name=rpm]", "100")
    page.click("#create-key button[type=submit]")
    secret = org_tab.text("#new-secret")
    assert secret.startswith("alz-")
    org_tab.shot("keys-created")
    with console_server.client(secret) as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["mistral-tiny"]
    row = page.locator("#keys tr", has_text="made-in-browser")
    assert "team-a" in row.inner_text() and "100 rpm" in row.inner_text()
    row.locator("select[name=grace_seconds]").select_option("0")
    row.locator("button", has_text="Rotate").click()
    rotated = org_tab.text("#new-secret")
    assert rotated != secret and "old secret has stopped working" in org_tab.text(".notice")
    with console_server.client(secret) as old, console_server.client(rotated) as new:
        assert old.get("/v1/models").status_code == 401 and new.get("/v1/models").status_code == 200
    page.locator("#keys tr", has_text="made-in-browser").locator("button", has_text="Revoke").click()
    page.wait_for_load_state()
    assert org_tab.dialogs and "Revoke this key" in org_tab.dialogs[-1]
    assert "revoked" in page.locator("#keys tr", has_text="made-in-browser").inner_text()
    with console_server.client(rotated) as new:
        assert new.get("/v1/models").status_code == 401
    assert all("alert(1)" != d for d in org_tab.dialogs)
    org_tab.shot("keys")


def test_a_limit_edited_in_the_console_refuses_requests(org_tab: Tab, console_server: Server):
    page = org_tab.page
    page.goto("/console/workspaces")
    card = page.locator("section.workspace[data-workspace=team-a]")
    assert "Tokens this month" in card.inner_text()
    card.locator("input[name=rpm]").fill("1")
    card.locator("button", has_text="Save limits").click()
    assert "1 rpm" in org_tab.text(".notice")
    with console_server.client(console_server.secrets["app-a"]) as client:  # type: ignore[attr-defined]
        statuses = [client.post("/v1/chat/completions", json=CHAT) for _ in range(2)]
    assert statuses[0].status_code == 200 and statuses[1].status_code == 429
    assert "workspace 'team-a'" in statuses[1].json()["message"]
    page.goto("/console/workspaces")
    card = page.locator("section.workspace[data-workspace=team-a]")
    assert "Requests admitted in the last minute" in card.inner_text()
    org_tab.shot("workspaces")
    card.locator("input[name=rpm]").fill("")
    card.locator("button", has_text="Save limits").click()
    with _admin(console_server) as admin:
        limits = {w["name"]: w["limits"] for w in admin.get("/admin/v1/workspaces").json()["data"]}
    assert limits["team-a"]["rpm"] is None and limits["team-a"]["monthly_tokens"] == 2_000_000


def test_batch_progress_and_files(org_tab: Tab, console_server: Server):
    with console_server.client(console_server.secrets["app-b"]) as client:  # type: ignore[attr-defined]
        job = client.post("/v1/batch/jobs", json={
            "model": "mistral-tiny", "endpoint": "/v1/chat/completions", "metadata": {"run": "<b>nightly</b>"},
            "requests": [{"custom_id": f"q{i}", "body": {"messages": [{"role": "user", "content": f"Word {i}"}],
                                                         "max_tokens": 3}} for i in range(3)]})
    assert job.status_code == 200, job.text
    job_id = job.json()["id"]
    page = org_tab.page
    page.goto("/console/batches")
    row = page.locator(f"#jobs tr[data-job-id='{job_id}']")
    assert "run=<b>nightly</b>" in row.inner_text()
    row.locator("a", has_text="output").wait_for(timeout=120_000)  # htmx refreshes the rows every 2 s
    assert "SUCCESS" in row.inner_text() and "3 / 3" in row.inner_text()
    output = page.request.get(row.locator("a", has_text="output").get_attribute("href"))
    assert output.ok and output.text().count("\n") == 3
    org_tab.shot("batches")


def test_models_page(org_tab: Tab):
    org_tab.page.goto("/console/models")
    row = org_tab.page.locator("#models tr", has_text="mistral-large-latest")
    assert "smollm2-135m-instruct" in row.inner_text() and "8\u202f192" in row.inner_text()
    assert "€0.002" in row.inner_text() and "€0.006" in row.inner_text()  # euros per 1,000 tokens in, out
    org_tab.shot("models")


def test_playground_streams_through_the_public_api(org_tab: Tab, console_server: Server):
    with _admin(console_server) as admin:
        before = admin.get("/admin/v1/usage", params={"workspace": "team-b"}).json()["total"]["requests"]
    page = org_tab.page
    page.goto("/console/playground")
    page.select_option("#pg-workspace", label="team-b")
    page.fill("#pg-max-tokens", "8")
    page.fill("#pg-temperature", "0")
    page.fill("#pg-message", "Say hello.")
    page.click("#pg-send")
    page.locator("#pg-usage[data-completion-tokens]").wait_for(timeout=60_000)  # (no eval: the CSP forbids it)
    assert org_tab.text("#pg-answer") and "completion tokens" in org_tab.text("#pg-usage")
    org_tab.shot("playground")
    with _admin(console_server) as admin:
        after = admin.get("/admin/v1/usage", params={"workspace": "team-b"}).json()["total"]["requests"]
        playground = [k for k in admin.get("/admin/v1/keys").json()["data"] if k["name"].startswith("console playground")]
    assert after == before + 1  # metered like any client, in the chosen workspace
    assert playground and playground[0]["workspace"] == "team-b" and playground[0]["expires_at"]


def test_phone_width(browser: object, console_server: Server):
    tab = Tab(browser, console_server.url, PHONE)
    tab.sign_in(console_server.admin_key)
    width = tab.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1  # wide tables scroll inside their card, the page does not
    tab.shot("usage-phone")
    tab.page.goto("/console/keys")
    tab.shot("keys-phone")
    tab.close()


def test_a_workspace_admin_sees_only_its_workspace(browser: object, console_server: Server):
    tab = Tab(browser, console_server.url)
    tab.sign_in(console_server.secrets["b-admin"])  # type: ignore[attr-defined]
    with _admin(console_server) as admin:
        total = admin.get("/admin/v1/usage", params={"workspace": "team-b"}).json()["total"]
    assert tab.text("#total-requests") == _count(total["requests"])
    assert tab.text("#total-cost") == _euros(total["cost_eur"])
    assert "admin of team-b" in tab.text(".who")
    assert "app-a" not in tab.page.content()
    tab.page.goto("/console/keys")
    keys = tab.text("#keys")
    assert "app-b" in keys and "app-a" not in keys and "team-a" not in tab.page.content()
    tab.page.goto("/console/workspaces")
    assert tab.page.locator("section.workspace").count() == 1 and "Create a workspace" not in tab.page.content()
    tab.shot("workspace-admin")
    tab.close()


def test_an_api_key_cannot_sign_in(browser: object, console_server: Server):
    tab = Tab(browser, console_server.url)
    tab.page.goto("/console/sign-in")
    tab.shot("sign-in")
    tab.page.fill("#key", console_server.secrets["app-a"])  # type: ignore[attr-defined]
    tab.page.click("button[type=submit]")
    assert "Only an admin key" in tab.text(".alert")
    assert tab.page.url.endswith("/console/sign-in")
    tab.errors = [e for e in tab.errors if "403" not in e]  # the refused form post itself
    tab.close()


def test_keyboard_reaches_every_page_and_sign_out(org_tab: Tab):
    page = org_tab.page
    page.goto("/console/")
    reached = []
    for _ in range(14):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert reached[0] == "Skip to content"
    for label in ("Usage", "Cost comparison", "API keys", "Workspaces", "Batches & files", "Models", "Playground",
                  "Sign out"):
        assert label in reached, reached
