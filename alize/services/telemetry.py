"""Prometheus metrics: what an operator alerts on, named so that dashboards written for
vLLM translate one to one (alize_time_to_first_token_seconds for
vllm:time_to_first_token_seconds...).

Requests are observed where they are recorded (the meter: every endpoint, local engine or
upstream), tokens as they stream (Call.progress), queue time when the engine starts a
sequence, refusals where the limiter refuses; engine gauges, prefix-cache counters, budgets
and upstream replicas are read at scrape time. Labels stay bounded: model, endpoint,
status, limit, backend and workspace names — never key or request ids."""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from alize.services.models import ModelHub

Family = GaugeMetricFamily | CounterMetricFamily

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
           160.0, 640.0)
TOKEN_GAP = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
disable_created_metrics()  # no *_created series: they double the scrape for nothing an alert uses

TOKENS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


class Telemetry:
    """The metrics of one server process, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ttft = Histogram("alize_time_to_first_token_seconds", "Time from arrival to the first token",
                              ["model"], buckets=LATENCY, registry=r)
        self.itl = Histogram("alize_inter_token_latency_seconds", "Time between two pieces of a streamed answer",
                             ["model"], buckets=TOKEN_GAP, registry=r)
        self.e2e = Histogram("alize_e2e_request_latency_seconds", "Time from arrival to the recorded end",
                             ["model", "endpoint"], buckets=LATENCY, registry=r)
        self.queue = Histogram("alize_request_queue_time_seconds", "Time a sequence waited for a slot",
                               ["model"], buckets=LATENCY, registry=r)
        self.prompt = Histogram("alize_request_prompt_tokens", "Prompt tokens of a request", ["model"],
                                buckets=TOKENS, registry=r)
        self.generation = Histogram("alize_request_generation_tokens", "Tokens generated for a request",
                                    ["model"], buckets=TOKENS, registry=r)
        self.requests = Counter("alize_requests", "Requests recorded, by final status",
                                ["model", "endpoint", "status"], registry=r)
        self.prompt_total = Counter("alize_prompt_tokens", "Prompt tokens billed", ["model"], registry=r)
        self.generation_total = Counter("alize_generation_tokens", "Tokens generated and billed", ["model"],
                                        registry=r)
        self.rate_limited = Counter("alize_rate_limited", "Requests refused by a limit", ["limit"], registry=r)
        self.batch_lines = Counter("alize_batch_lines", "Batch lines done, by outcome", ["status"], registry=r)
        self.cost = Counter("alize_cost_eur", "Spend, in euros", ["workspace"], registry=r)

    def request(self, name: str, endpoint: str, status: int, seconds: float, billed: bool, prompt: int,
                completion: int, cost_eur: float, workspace: str) -> None:
        """A request recorded (its usage row written), however it ended; `name` is the model's
        label ("none" when it was refused before its model was known)."""
        self.requests.labels(name, endpoint, str(status)).inc()
        self.e2e.labels(name, endpoint).observe(seconds)
        if billed:
            self.prompt.labels(name).observe(prompt)
            self.generation.labels(name).observe(completion)
            self.prompt_total.labels(name).inc(prompt)
            self.generation_total.labels(name).inc(completion)
            if cost_eur:
                self.cost.labels(workspace).inc(cost_eur)

    def add_source(self, collect: Callable[[], Iterator[Family]]) -> None:
        """Metrics read at scrape time (engines, budgets, upstream replicas)."""
        self.registry.register(_Source(collect))


def engine_metrics(hub: ModelHub) -> Iterator[Family]:
    """The local engines, labelled with the backend's name (one engine may serve several ids)."""
    running = GaugeMetricFamily("alize_requests_running", "Sequences decoding in the engine", labels=["model"])
    waiting = GaugeMetricFamily("alize_requests_waiting", "Sequences waiting for a slot", labels=["model"])
    kv = GaugeMetricFamily("alize_kv_cache_usage_ratio", "Share of the KV cache in use", labels=["model"])
    queries = CounterMetricFamily("alize_prefix_cache_queries", "Prompt tokens looked up in the prefix cache",
                                  labels=["model"])
    hits = CounterMetricFamily("alize_prefix_cache_hits", "Prompt tokens found in the prefix cache",
                               labels=["model"])
    finished = CounterMetricFamily("alize_engine_finished_requests", "Sequences finished, by reason",
                                   labels=["model", "reason"])
    prefilled = CounterMetricFamily("alize_engine_prompt_tokens", "Prompt tokens the engine computed (not cached)",
                                    labels=["model"])
    generated = CounterMetricFamily("alize_engine_generated_tokens", "Tokens the engine generated (billed or not)",
                                    labels=["model"])
    for name, (stats, kv_usage) in hub.engine_stats().items():
        running.add_metric([name], stats.num_running)
        waiting.add_metric([name], stats.num_waiting)
        kv.add_metric([name], kv_usage)
        queries.add_metric([name], stats.num_prompt_tokens + stats.num_cached_tokens)
        hits.add_metric([name], stats.num_cached_tokens)
        generated.add_metric([name], stats.num_generated_tokens)
        prefilled.add_metric([name], stats.num_prompt_tokens)
        for reason, count in dict(stats.num_finished).items():
            finished.add_metric([name, reason], count)
    yield from (running, waiting, kv, queries, hits, finished, generated, prefilled)


def backend_metrics(hub: ModelHub) -> Iterator[Family]:
    """Upstream replicas: up or not, requests in flight, failovers."""
    up = GaugeMetricFamily("alize_backend_up", "1 while the replica is in use, 0 while ejected", labels=["backend"])
    inflight = GaugeMetricFamily("alize_backend_inflight", "Requests in flight to the replica", labels=["backend"])
    failovers = CounterMetricFamily("alize_backend_failovers", "Requests moved off the replica after it failed",
                                    labels=["backend"])
    seen: set[str] = set()
    for model in hub.backends_status():
        for replica in model["replicas"]:  # type: ignore[attr-defined]
            if replica["name"] in seen:  # a replica serving several models: counted once
                continue
            seen.add(replica["name"])
            up.add_metric([replica["name"]], 1 if replica["up"] else 0)
            inflight.add_metric([replica["name"]], replica["inflight"])
            failovers.add_metric([replica["name"]], replica["failovers"])
    yield from (up, inflight, failovers)


def budget_metrics(left: dict[str, float]) -> Iterator[Family]:
    """Euros left this month, by workspace (those with a budget)."""
    gauge = GaugeMetricFamily("alize_budget_remaining_eur", "Euros left this month in the workspace's budget",
                              labels=["workspace"])
    for name, euros in left.items():
        gauge.add_metric([name], euros)
    yield gauge


class _Source(Collector):
    def __init__(self, collect: Callable[[], Iterator[Family]]):
        self._collect = collect

    def collect(self) -> Iterator[Family]:
        return self._collect()
