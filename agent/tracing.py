"""OpenTelemetry tracing that continues the task's X-Ray trace across the queue.

The parent is the X-Ray header the message carries (SQS ``AWSTraceHeader``, else the
``X-Amzn-Trace-Id`` message attribute the task API sets). Each task gets a root span
``sdfleet.task`` (CONSUMER) with children ``receive``, ``input_fetch``, ``inference``,
``upload`` and ``notify``; the completion notification carries the task span as its header.

Off by default: without an OTLP endpoint the API's no-op tracer is used, which still hands the
incoming header's context on (so notifications and logs keep the API's trace id). With
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) set, spans go out over OTLP/HTTP to
the ADOT collector, which forwards them to X-Ray. The X-Ray SDK is not used.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Status, StatusCode

from sdfleet.agent.contract_log import xray_trace_id, xray_trace_id_from_int

log = logging.getLogger("agent.tracing")
XRAY_HEADER = "X-Amzn-Trace-Id"
# Span attributes; the collector indexes the first two as X-Ray annotations
# (``annotation.sdfleet_task_id``, ``annotation.sdfleet_runtime``).
TASK_ID = "sdfleet.task_id"
RUNTIME = "sdfleet.runtime"
ERROR_CODE = "sdfleet.error_code"
STATUS = "sdfleet.status"
STAGES = ("receive", "input_fetch", "inference", "upload", "notify")
_PROPAGATOR = AwsXRayPropagator()


class XRayIdGenerator(RandomIdGenerator):
    """Trace ids X-Ray accepts: the first 32 bits are the start time in epoch seconds."""

    def generate_trace_id(self) -> int:
        return (int(time.time()) << 96) | random.getrandbits(96)


def header_trace_id(header: str | None) -> str | None:
    """The ``Root`` of an X-Ray header, or None when there is none (or it is malformed);
    never the process environment's (the agent is not a Lambda)."""
    return xray_trace_id(header or "")


def span_trace_id(span: Any, header: str | None = None) -> str | None:
    """The X-Ray trace id of ``span`` (valid even when not recorded), else the header's."""
    if span is not None:
        context = span.get_span_context()
        if context.is_valid:
            return xray_trace_id_from_int(context.trace_id)
    return header_trace_id(header)


def span_header(span: Any, fallback: str | None = None) -> str | None:
    """``span`` as an X-Ray header (``Root=1-...;Parent=<span id>;Sampled=1``), else
    ``fallback`` (the header the message came with) when it is one."""
    carrier: dict[str, str] = {}
    if span is not None and span.get_span_context().is_valid:
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    if XRAY_HEADER in carrier:
        return carrier[XRAY_HEADER]
    return fallback if header_trace_id(fallback) else None


def end_span(span: Any, code: str | None = None, message: str | None = None) -> None:
    """End ``span`` once; ``code``: it failed with this error code (status ERROR)."""
    if span is None or not span.is_recording():
        return
    if code is not None:
        span.set_attribute(ERROR_CODE, code)
        span.set_status(Status(StatusCode.ERROR, message or code))
    span.end()


def new_provider(service_name: str, processor: SpanProcessor | None = None) -> TracerProvider:
    """A tracer provider with X-Ray-valid ids (``processor``: where spans go)."""
    from opentelemetry.sdk.resources import Resource

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), id_generator=XRayIdGenerator()
    )
    if processor is not None:
        provider.add_span_processor(processor)
    return provider


class Tracing:
    def __init__(self, tracer: Any, provider: Any = None) -> None:
        self.tracer = tracer
        self.provider = provider

    @classmethod
    def setup(cls, endpoint: str | None, service_name: str) -> Tracing:
        if not endpoint:
            return cls(trace.NoOpTracer())
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # The exporter reads OTEL_EXPORTER_OTLP_* itself (endpoint, headers, timeout).
        provider = new_provider(service_name, BatchSpanProcessor(OTLPSpanExporter()))
        log.info("tracing enabled", extra={"fields": {"endpoint": endpoint}})
        return cls.of(provider)

    @classmethod
    def of(cls, provider: TracerProvider) -> Tracing:
        return cls(provider.get_tracer("sdfleet.agent"), provider)

    def parent_context(self, trace_header: str | None) -> otel_context.Context | None:
        if not trace_header:
            return None
        return _PROPAGATOR.extract(carrier={XRAY_HEADER: trace_header})

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


def install_header_hook(client: Any) -> None:
    """Send each SNS Publish's ``X-Amzn-Trace-Id`` message attribute as its HTTP header too,
    so X-Ray links the publish to the trace (botocore adds the header only inside Lambda)."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None:  # a test double
        return
    events.register(
        "before-parameter-build.sns.Publish", _remember_header, unique_id="sdfleet-xray-remember"
    )
    events.register("before-call.sns.Publish", _send_header, unique_id="sdfleet-xray-send")


def _remember_header(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    value = (params.get("MessageAttributes") or {}).get(XRAY_HEADER, {}).get("StringValue")
    if value:
        context[XRAY_HEADER] = value


def _send_header(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    value = context.get(XRAY_HEADER)
    if value:
        params.setdefault("headers", {})[XRAY_HEADER] = value
