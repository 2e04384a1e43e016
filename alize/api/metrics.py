"""GET /metrics: Prometheus text format, read from the engines at scrape time."""

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from alize.services.models import ModelHub

router = APIRouter()


class EngineCollector(Collector):
    def __init__(self, hub: ModelHub):
        self.hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        sequences = GaugeMetricFamily("alize_engine_sequences", "Sequences in the engine",
                                      labels=["model", "state"])
        prompt = CounterMetricFamily("alize_engine_prompt_tokens", "Prompt tokens prefilled",
                                     labels=["model"])
        generated = CounterMetricFamily("alize_engine_generated_tokens", "Tokens generated",
                                        labels=["model"])
        finished = CounterMetricFamily("alize_engine_finished_requests", "Finished sequences",
                                       labels=["model", "reason"])
        for name, stats in self.hub.engine_stats().items():
            sequences.add_metric([name, "running"], stats.num_running)
            sequences.add_metric([name, "waiting"], stats.num_waiting)
            prompt.add_metric([name], stats.num_prompt_tokens)
            generated.add_metric([name], stats.num_generated_tokens)
            for reason, count in dict(stats.num_finished).items():
                finished.add_metric([name, reason], count)
        yield from (sequences, prompt, generated, finished)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    registry.register(EngineCollector(request.app.state.platform.hub))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
