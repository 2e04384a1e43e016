"""/metrics on the real server: refused without an admin key; after known traffic the
request histograms and counters moved by exactly what was sent; limits, budgets and the
engine are visible; no key or request id appears as a label."""

import httpx
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import SDKError
from prometheus_client.parser import text_string_to_metric_families

from alize.api.metrics import _open_to
from tests.platform_helpers import create_key
from tests.server import Server

MODEL = "ministral-3b-latest"  # a model id the other tests leave alone: its series move only here


def scrape(server: Server) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    r = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.admin_key}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(r.text) for s in family.samples}
    return r.text, samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_an_admin_key(server: Server):
    assert httpx.get(server.url + "/metrics").status_code == 401
    plain = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.key}"})
    assert plain.status_code == 403 and plain.json()["object"] == "error"


def test_requests_are_counted_and_timed_exactly(server: Server):
    _, before = scrape(server)
    client = Mistral(api_key=server.key, server_url=server.url)
    prompt = completion = 0
    for i in range(3):
        res = client.chat.complete(model=MODEL, messages=[{"role": "user", "content": f"Hi {i}"}], max_tokens=4,
                                   http_headers={"x-request-id": f"metrics-secret-id-{i}"})
        prompt, completion = prompt + res.usage.prompt_tokens, completion + res.usage.completion_tokens
    streamed = list(client.chat.stream(model=MODEL, messages=[{"role": "user", "content": "Count"}], max_tokens=6,
                                       temperature=0))
    usage = streamed[-1].data.usage
    prompt, completion = prompt + usage.prompt_tokens, completion + usage.completion_tokens
    bad = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {server.key}"},
                     json={"model": MODEL, "messages": [], "max_tokens": 2})
    assert bad.status_code in (400, 422)
    text, after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("alize_requests_total", model=MODEL, endpoint="chat.completions", status="200") == 4
    # refused before a model was admitted: under model "none" (a client's model string is no label)
    assert moved("alize_requests_total", model="none", endpoint="chat.completions", status=str(bad.status_code)) == 1
    assert moved("alize_e2e_request_latency_seconds_count", model=MODEL, endpoint="chat.completions") == 4
    assert moved("alize_time_to_first_token_seconds_count", model=MODEL) == 4
    assert moved("alize_request_queue_time_seconds_count", model=MODEL) == 4
    assert moved("alize_inter_token_latency_seconds_count", model=MODEL) >= 4  # pieces after the first
    assert moved("alize_request_prompt_tokens_count", model=MODEL) == 4
    assert moved("alize_request_prompt_tokens_sum", model=MODEL) == prompt
    assert moved("alize_prompt_tokens_total", model=MODEL) == prompt
    assert moved("alize_generation_tokens_total", model=MODEL) == completion
    assert moved("alize_prefix_cache_queries_total", model="smollm2-135m-instruct") >= prompt
    assert 0 <= value(after, "alize_kv_cache_usage_ratio", model="smollm2-135m-instruct") <= 1
    assert ("alize_requests_waiting", (("model", "smollm2-135m-instruct"),)) in after
    assert "metrics-secret-id" not in text and server.key[:12] not in text  # no request or key ids as labels


def test_refusals_by_limit_and_budgets_left_are_visible(server: Server):
    with server.client(server.admin_key) as admin:
        ws = admin.post("/admin/v1/workspaces", json={"name": "metered-ws", "budget_eur": 2})
        assert ws.status_code == 201, ws.text
    key = create_key(server, workspace="metered-ws", rpm=1)["secret"]
    _, before = scrape(server)
    client = Mistral(api_key=key, server_url=server.url)
    client.chat.complete(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    with pytest.raises(SDKError, match="429"):
        client.chat.complete(model=MODEL, messages=[{"role": "user", "content": "Again"}], max_tokens=2)
    _, after = scrape(server)
    assert value(after, "alize_rate_limited_total", limit="key_rpm") - value(
        before, "alize_rate_limited_total", limit="key_rpm") == 1
    left = value(after, "alize_budget_remaining_eur", workspace="metered-ws")
    assert 0 < 2 - left < 0.01  # one small request spent
    assert value(after, "alize_cost_eur_total", workspace="metered-ws") == pytest.approx(2 - left)


class _Request:
    def __init__(self, host: str, networks: str):
        self.client = type("Client", (), {"host": host})()
        settings = type("Settings", (), {"metrics_open_to": networks})()
        self.app = type("App", (), {"state": type("State", (), {"platform": type("P", (), {"settings": settings})()})()})()


def test_a_scrapers_network_may_be_let_in_without_a_key():
    assert _open_to(_Request("10.1.2.3", "10.0.0.0/8, 127.0.0.1/32"))  # type: ignore[arg-type]
    assert _open_to(_Request("127.0.0.1", "10.0.0.0/8,127.0.0.1/32"))  # type: ignore[arg-type]
    assert not _open_to(_Request("192.168.1.1", "10.0.0.0/8"))  # type: ignore[arg-type]
    assert not _open_to(_Request("10.1.2.3", ""))  # type: ignore[arg-type]


def test_the_dashboard_and_alerts_use_metrics_the_server_exposes(server: Server):
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs" / "grafana"
    text, _ = scrape(server)

    def base(name: str) -> str:
        return re.sub(r"_(bucket|sum|count|total)$", "", name)

    exposed = {base(name) for name in re.findall(r"^# TYPE (\S+)", text, re.M)}
    for path in (docs / "alize-dashboard.json", docs / "alerts.yaml"):
        used = {base(name) for name in re.findall(r"\b(alize_[a-z_]+)", path.read_text())}
        assert used and used <= exposed, (path.name, used - exposed)
