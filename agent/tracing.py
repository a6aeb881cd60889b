"""OpenTelemetry tracing that continues the X-Ray trace from the SQS ``AWSTraceHeader``.

Off by default: without an OTLP endpoint the API's no-op tracer is used. With
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) set, spans go out over OTLP/HTTP,
e.g. to an ADOT collector that forwards them to X-Ray. The X-Ray SDK is not used.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

log = logging.getLogger("agent.tracing")
XRAY_HEADER = "X-Amzn-Trace-Id"


class Tracing:
    def __init__(self, tracer: Any, provider: Any = None) -> None:
        self.tracer = tracer
        self.provider = provider
        self._propagator: Any = None

    @classmethod
    def setup(cls, endpoint: str | None, service_name: str) -> Tracing:
        if not endpoint:
            return cls(trace.NoOpTracer())
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # X-Ray accepts W3C trace ids, so the default id generator is fine.
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        # The exporter reads OTEL_EXPORTER_OTLP_* itself (endpoint, headers, timeout).
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("tracing enabled", extra={"fields": {"endpoint": endpoint}})
        return cls(provider.get_tracer("sdfleet.agent"), provider)

    def parent_context(self, trace_header: str | None) -> otel_context.Context | None:
        if not trace_header:
            return None
        if self._propagator is None:
            from opentelemetry.propagators.aws import AwsXRayPropagator

            self._propagator = AwsXRayPropagator()
        return self._propagator.extract(carrier={XRAY_HEADER: trace_header})

    def start_task_span(self, trace_header: str | None, attributes: dict[str, Any]) -> Any:
        return self.tracer.start_span(
            "sdfleet.task",
            context=self.parent_context(trace_header),
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )

    def child(self, parent: Any, name: str) -> Any:
        return self.tracer.start_span(name, context=trace.set_span_in_context(parent))

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
