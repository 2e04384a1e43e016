"""OpenTelemetry traces, when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set and
the optional packages are installed (`pip install 'alize[otel]'`): one span per request,
named and attributed by the GenAI semantic conventions (`chat mistral-small-latest`,
gen_ai.operation.name, gen_ai.request.model, gen_ai.usage.input_tokens...), continuing the
client's `traceparent`, with child spans for admission, the queue, prefill and decode (the
local engine) or the upstream call, and the trace passed on to an upstream engine.

Child spans are written when the request is recorded, from the times the call noted: the
hot path (each token) pays only a clock read."""

import logging
import os
import time
from typing import Any

log = logging.getLogger(__name__)

OPERATIONS = {"chat.completions": "chat", "fim.completions": "text_completion", "completions": "text_completion",
              "embeddings": "embeddings", "agents.completions": "chat",
              "conversations": "chat", "moderations": "chat", "chat.moderations": "chat"}


class Tracing:
    def __init__(self, provider: Any):
        from opentelemetry import trace

        self.provider = provider
        self.tracer = provider.get_tracer("alize")
        self._trace = trace

    @classmethod
    def from_environment(cls) -> "Tracing | None":
        """Tracing to the OTLP endpoint the standard variables name; None when none is named."""
        if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
                        "(pip install 'alize[otel]'): no traces")
            return None
        provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                           "alize")}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("tracing to %s", os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                 or os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
        return cls(provider)

    def start(self, endpoint: str, traceparent: str | None) -> Any:
        """The request's span, begun now, under the client's trace when it sent one."""
        from opentelemetry.propagate import extract

        context = extract({"traceparent": traceparent}) if traceparent else None
        operation = OPERATIONS.get(endpoint, endpoint)
        return self.tracer.start_span(operation, context=context, kind=self._trace.SpanKind.SERVER,
                                      attributes={"gen_ai.operation.name": operation,
                                                  "gen_ai.provider.name": "alize"})

    def headers(self, span: Any) -> dict[str, str]:
        """traceparent (and tracestate) for a call to another server within this span."""
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier, context=self._trace.set_span_in_context(span))
        return carrier

    def finish(self, span: Any, marks: dict[str, float], attributes: dict[str, Any], failed: bool) -> None:
        """Ends the request's span with its attributes and writes its children from `marks`
        (monotonic times: admitted_from, admitted, queued_until, first_piece, last_piece,
        upstream_from, upstream_until; upstream_replica in attributes)."""
        now = time.monotonic()
        wall = time.time_ns()

        def ns(mark: float) -> int:
            return wall - int((now - mark) * 1e9)

        context = self._trace.set_span_in_context(span)
        model = attributes.get("gen_ai.request.model")
        if model:
            span.update_name(f"{span.name} {model}")
        children = [("admission", "admitted_from", "admitted"), ("queue", "admitted", "queued_until"),
                    ("prefill", "queued_until", "first_piece"), ("decode", "first_piece", "last_piece")]
        for name, begin, end in children:
            if begin in marks and end in marks:
                self.tracer.start_span(name, context=context, start_time=ns(marks[begin])).end(end_time=ns(marks[end]))
        if "upstream_from" in marks:
            replica = attributes.pop("alize.upstream.replica", None)
            child = self.tracer.start_span(f"upstream {replica}", context=context, kind=self._trace.SpanKind.CLIENT,
                                           start_time=ns(marks["upstream_from"]),
                                           attributes={"alize.upstream.replica": replica or ""})
            child.end(end_time=ns(marks.get("upstream_until", now)))
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if failed:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end(end_time=wall)

    def shutdown(self) -> None:
        self.provider.shutdown()  # exports what is still buffered
