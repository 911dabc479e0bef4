"""OpenTelemetry traces: the provider each process sets up, the redaction every span goes
through, the local span file of the embedded stack, and the model-call span (GenAI conventions).

Configuration is OpenTelemetry's own (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` (http/protobuf),
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_EXPORTER=none`). Exporting over
OTLP is off unless an endpoint is configured. Exporters run behind `BatchSpanProcessor`s (a
background thread, a bounded queue that drops when full, short export timeouts), so a collector
that is down or slow never slows an incident.

Every span reaches its exporters through `RedactingSpanProcessor`: the secrets and personal data
`agentic_core.redaction` finds are replaced in every attribute, event, link attribute and status
text, whichever instrumentation made the span. Message content is not put on model spans unless
`capture_content` is on (then redacted first, and by the processor again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util import types

from agentic_core.redaction import Redactor

log = logging.getLogger("agentic.telemetry")

TRACER_NAME = "agentic-platform"
SPANS_FILE_MAX_BYTES = 20 * 1024 * 1024  # then the file is rotated to `.1` (one old file kept)
EXPORT_TIMEOUT_S = 5.0  # one OTLP export, unless OTEL_EXPORTER_OTLP_TIMEOUT says otherwise
_CONTENT_MAX_CHARS = 4000


# --------------------------------------------------------------------------- redaction


_CLEAN_MAX = 8192
_clean_seen: OrderedDict[str, None] = OrderedDict()  # strings known to hold nothing to redact
_clean_lock = threading.Lock()


def _clean_text(text: str) -> str:
    """`text` redacted. A trace repeats the same ids and names on many spans, so strings that held
    nothing to redact are remembered (bounded); a string that held a secret is never kept."""
    with _clean_lock:
        if text in _clean_seen:
            _clean_seen.move_to_end(text)
            return text
    out = Redactor().redact(text)
    if out == text and len(text) <= 512:
        with _clean_lock:
            _clean_seen[text] = None
            if len(_clean_seen) > _CLEAN_MAX:
                _clean_seen.popitem(last=False)
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _clean_text(value) if value else value
    if isinstance(value, (list, tuple)):
        return tuple(_clean(v) for v in value)
    return value


# URL attributes the HTTP instrumentations (httpx, ASGI) set: every query value is dropped, the
# user-info and a Telegram bot token in the path too, before the usual redaction.
_URL_ATTRIBUTES = frozenset({"url.full", "url.query", "http.url", "http.target", "url.original"})
# Header attributes (`OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*` would add them): never exported.
_HEADER_PREFIXES = ("http.request.header.", "http.response.header.")
_BOT_TOKEN = re.compile(r"\b(bot)?\d{5,}:[A-Za-z0-9_-]{30,}")
REDACTED_VALUE = "REDACTED"


def redact_query(query: str) -> str:
    """A query string with every value replaced (the names stay: they help, the values may be keys)."""
    if not query:
        return query
    return "&".join(
        f"{name}={REDACTED_VALUE}" if sep else REDACTED_VALUE
        for name, sep, _value in (part.partition("=") for part in query.split("&"))
    )


def redact_url(url: str) -> str:
    """A URL (or a path with a query) without its query values, user-info or bot token."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED_VALUE
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    path = _BOT_TOKEN.sub(lambda m: f"{m.group(1) or ''}{REDACTED_VALUE}", parts.path)
    return urlunsplit((parts.scheme, netloc, path, redact_query(parts.query), ""))


def _attribute(key: str, value: Any) -> Any:
    if key in _URL_ATTRIBUTES and isinstance(value, str):
        value = redact_query(value) if key == "url.query" else redact_url(value)
    return _clean(value)


def redact_attributes(attrs: types.Attributes) -> dict[str, Any]:
    return {k: _attribute(k, v) for k, v in (attrs or {}).items() if not k.startswith(_HEADER_PREFIXES)}


class RedactingSpanProcessor(SpanProcessor):
    """Passes a redacted copy of every ended span to `next` (whose exporter sends it on)."""

    def __init__(self, next: SpanProcessor) -> None:
        self.next = next

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.next.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.next.on_end(redacted_span(span))

    def shutdown(self) -> None:
        self.next.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.next.force_flush(timeout_millis)


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    status = span.status
    if status.description:
        status = Status(status.status_code, _clean(status.description))
    return ReadableSpan(
        name=_clean(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redact_attributes(span.attributes),
        events=[Event(e.name, redact_attributes(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, redact_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


# --------------------------------------------------------------------------- the local span file


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as a JSON-able dict (the local file's line; `agentic incidents trace` reads it)."""
    ctx = span.context
    assert ctx is not None
    return {
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "name": span.name,
        "service": (span.resource.attributes.get("service.name") if span.resource else None) or "",
        "kind": span.kind.name.lower(),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name.lower(),
        "status_text": span.status.description or "",
        "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()},
        "events": [{"name": e.name, "ns": e.timestamp, "attributes": dict(e.attributes or {})} for e in span.events],
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
    }


class JsonlSpanExporter(SpanExporter):
    """Appends spans, one JSON object a line, to `path` (rotated to `path.1` past `max_bytes`)."""

    def __init__(self, path: Path, max_bytes: int = SPANS_FILE_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        try:
            with self._lock:
                if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                    self.path.replace(self.path.with_name(self.path.name + ".1"))
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(lines)
        except OSError as exc:
            log.warning("spans not written to %s: %s", self.path, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


# --------------------------------------------------------------------------- set-up


def otlp_endpoint() -> str | None:
    """The OTLP traces endpoint the environment configures (None: OTLP export is off)."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


def _otlp_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    if protocol and protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported here: exporting with http/protobuf", protocol)
    timeout = float(os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT", "") or EXPORT_TIMEOUT_S * 1000) / 1000
    return OTLPSpanExporter(endpoint=endpoint, timeout=min(timeout, EXPORT_TIMEOUT_S))


def build_provider(
    service: str,
    *,
    spans_dir: Path | None = None,
    exporters: Sequence[SpanExporter] = (),
    batch: bool = True,
) -> TracerProvider:
    """A TracerProvider for `service` (OTEL_SERVICE_NAME wins) with the configured exporters,
    each behind a `RedactingSpanProcessor`: OTLP when an endpoint is configured, the local span
    file when `spans_dir` is given (`<spans_dir>/<service>.jsonl`), and `exporters` (tests)."""
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    chosen: list[SpanExporter] = list(exporters)
    endpoint = otlp_endpoint()
    if endpoint:
        chosen.append(_otlp_exporter(endpoint))
    if spans_dir is not None:
        chosen.append(JsonlSpanExporter(spans_dir / f"{service}.jsonl"))
    for exporter in chosen:
        if batch:
            inner: SpanProcessor = BatchSpanProcessor(
                exporter, schedule_delay_millis=500, export_timeout_millis=int(EXPORT_TIMEOUT_S * 1000)
            )
        else:
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor

            inner = SimpleSpanProcessor(exporter)
        provider.add_span_processor(RedactingSpanProcessor(inner))
    return provider


_provider: TracerProvider | None = None


def install(provider: TracerProvider) -> None:
    """Make `provider` the process's global one (once: OpenTelemetry allows one)."""
    global _provider
    _provider = provider
    trace.set_tracer_provider(provider)


def shutdown(timeout_s: float = 3.0) -> None:
    """Flush what is queued (bounded by `timeout_s`) before the process exits."""
    if _provider is not None:
        with contextlib.suppress(Exception):
            _provider.force_flush(int(timeout_s * 1000))
            _provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


# --------------------------------------------------------------------------- spans the platform makes

_capture_content = False


def set_capture_content(on: bool) -> None:
    """Put model messages on model spans (redacted) — off by default."""
    global _capture_content
    _capture_content = on


def _activity_attributes() -> dict[str, str]:
    """The incident (or agent run) the current activity works for."""
    try:
        from temporalio import activity

        info = activity.info()
    except Exception:
        return {}
    attrs = {"temporal.workflow.type": info.workflow_type or ""}
    if info.workflow_type == "IncidentWorkflow":
        attrs["agentic.incident_id"] = info.workflow_id or ""
        attrs["gen_ai.agent.name"] = "incident"
    elif info.workflow_type:
        attrs["gen_ai.agent.name"] = info.workflow_type
    return attrs


@contextlib.contextmanager
def model_span(pool: str, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Iterator[trace.Span]:
    """The span of one model call: GenAI semantic conventions (`gen_ai.*`), the pool, the
    incident. No message content unless capture is on."""
    provider, _, request_model = model.partition("/")
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider if request_model else "openai",
        "gen_ai.request.model": request_model or model,
        "agentic.model_pool": pool,
        **_activity_attributes(),
    }
    for key in ("max_tokens", "temperature"):
        if params.get(key) is not None:
            attrs[f"gen_ai.request.{key}"] = params[key]
    if _capture_content:
        attrs["gen_ai.input.messages"] = Redactor().redact(json.dumps(messages, default=str))[:_CONTENT_MAX_CHARS]
    with tracer().start_as_current_span(
        f"chat {request_model or model}", kind=SpanKind.CLIENT, attributes=attrs
    ) as span:
        yield span


def record_response(span: trace.Span, resp: Any, input_tokens: int, output_tokens: int) -> None:
    """The response's model, finish reason and token usage on the model span."""
    with contextlib.suppress(Exception):
        span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if getattr(resp, "model", None):
            span.set_attribute("gen_ai.response.model", str(resp.model))
        choices = getattr(resp, "choices", None) or []
        reasons = [str(c.finish_reason) for c in choices if getattr(c, "finish_reason", None)]
        if reasons:
            span.set_attribute("gen_ai.response.finish_reasons", reasons)
        if _capture_content and choices:
            text = getattr(choices[0].message, "content", "") or ""
            span.set_attribute("gen_ai.output.messages", Redactor().redact(text)[:_CONTENT_MAX_CHARS])


def set_error(span: trace.Span, exc: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    span.set_attribute("error.type", type(exc).__name__)


def now_ns() -> int:
    return time.time_ns()


@contextlib.contextmanager
def incident_span(incident_id: str, *, own_trace: bool) -> Iterator[trace.Span]:
    """The delivery of one alert group to its incident. `own_trace`: a new trace linked to the
    request's span (a list of events is several incidents: each gets its own trace)."""
    attrs = {"agentic.incident_id": incident_id}
    if not own_trace:
        with tracer().start_as_current_span("deliver incident", attributes=attrs) as span:
            yield span
        return
    from opentelemetry.context import Context

    current = trace.get_current_span().get_span_context()
    links = [Link(current)] if current.is_valid else []
    with tracer().start_as_current_span(
        "deliver incident", context=Context(), links=links, attributes=attrs, kind=SpanKind.PRODUCER
    ) as span:
        yield span


def current_traceparent() -> str:
    """The W3C traceparent of the current span ('' when none is recording)."""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


def links_to(traceparent: str) -> list[Link]:
    """A link to the span a stored traceparent names (none when it is empty or malformed)."""
    if not traceparent:
        return []
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    ctx = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))
    span_context = ctx.get_span_context()
    return [Link(span_context, {"agentic.link": "incident"})] if span_context.is_valid else []
