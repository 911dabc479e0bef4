"""Telemetry's pure parts: the redacting span processor (whatever made the span), the local span
file and the waterfall `agentic incidents trace` prints from it (the CLI in a subprocess), the
model span's GenAI attributes, and the metrics' bounded labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from activities.telemetry import metrics, tracing
from tests.support.env import REPO

SECRETS = {
    "attribute": "ghp_" + "A1b2" * 9,
    "list": "AKIAIOSFODNN7EXAMPLE",
    "event": "hunter2-event-Secr3t",
    "link": "xoxb-1111111111-abcdefghijklmnop",
    "status": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "email": "alice@example.com",
}


def _provider(*exporters: InMemorySpanExporter) -> TracerProvider:
    return tracing.build_provider("agentic-unit", exporters=exporters, batch=False)


def test_every_attribute_event_link_and_status_of_every_span_is_redacted(monkeypatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    mem = InMemorySpanExporter()
    tracer = _provider(mem).get_tracer("any-instrumentation")
    with tracer.start_as_current_span("first") as first:
        ctx = first.get_span_context()
    with tracer.start_as_current_span(
        "second",
        links=[Link(ctx, {"why": f"token={SECRETS['link']}"})],
        attributes={"db.statement": f"password={SECRETS['attribute']}", "ids": ["x", SECRETS["list"]], "n": 3},
    ) as span:
        span.add_event("log", {"message": f"api_key: {SECRETS['event']} for {SECRETS['email']}"})
        span.set_status(Status(StatusCode.ERROR, f"Authorization: Bearer {SECRETS['status']}"))
    exported = mem.get_finished_spans()
    assert [s.name for s in exported] == ["first", "second"]
    second = exported[1]
    text = json.dumps(
        [
            dict(second.attributes or {}),
            [dict(e.attributes or {}) for e in second.events],
            [dict(link.attributes or {}) for link in second.links],
            second.status.description,
        ],
        default=str,
    )
    for where, secret in SECRETS.items():
        assert secret not in text, where
    assert second.attributes is not None and second.attributes["n"] == 3  # numbers untouched
    assert "[SECRET_1]" in str(second.attributes["db.statement"]) and "[EMAIL_1]" in text
    assert second.links[0].context == ctx  # the link still points at its span
    # strings that held nothing are remembered to spare the work on later spans; secrets never are
    assert "first" in tracing._clean_seen
    assert not any(secret in seen for seen in tracing._clean_seen for secret in SECRETS.values())


def test_the_model_span_follows_the_genai_conventions_and_carries_no_content_by_default() -> None:
    mem = InMemorySpanExporter()
    provider = _provider(mem)
    tracing.set_capture_content(False)

    from types import SimpleNamespace

    resp = SimpleNamespace(
        model="smollm2", choices=[SimpleNamespace(finish_reason="stop", message=SimpleNamespace(content="x"))]
    )

    from opentelemetry import trace

    real = trace.get_tracer
    try:
        trace.get_tracer = lambda *a, **k: provider.get_tracer("t")  # type: ignore[assignment]
        with tracing.model_span(
            "planner", "openai/smollm2", [{"role": "user", "content": "db_password=hunter2xyz"}], {"max_tokens": 64}
        ) as span:
            tracing.record_response(span, resp, 120, 30)
    finally:
        trace.get_tracer = real  # type: ignore[assignment]
    [s] = mem.get_finished_spans()
    attrs = dict(s.attributes or {})
    assert s.name == "chat smollm2" and s.kind == SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "smollm2" and attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.usage.input_tokens"] == 120 and attrs["gen_ai.usage.output_tokens"] == 30
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",) and attrs["agentic.model_pool"] == "planner"
    assert not any("messages" in k for k in attrs) and "hunter2xyz" not in json.dumps(attrs, default=str)


def test_a_stored_traceparent_becomes_a_link() -> None:
    provider = _provider()
    with provider.get_tracer("t").start_as_current_span("question") as span:
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        from opentelemetry import trace

        inject(carrier, context=trace.set_span_in_context(span))
        [link] = tracing.links_to(carrier["traceparent"])
        assert link.context.trace_id == span.get_span_context().trace_id
    assert tracing.links_to("") == [] and tracing.links_to("not-a-traceparent") == []


def test_metric_labels_stay_bounded() -> None:
    assert metrics.label("approved", frozenset({"approved"})) == "approved"
    assert metrics.label("inc-1234", frozenset({"approved"})) == "other"
    assert len(metrics.label("x" * 500)) == 40
    opened = metrics._Opened(limit=2)
    for i in range(3):
        opened.mark(f"inc-{i}")
    assert opened.take("inc-0") is None and opened.take("inc-2") is not None and opened.take("inc-2") is None


def _span(trace_id: str, span_id: str, parent: str | None, name: str, start: int, end: int, **attrs: str) -> str:
    return json.dumps(
        {
            "trace_id": trace_id,
            "span_id": span_id,
            "parent_id": parent,
            "name": name,
            "service": "agentic-worker",
            "kind": "internal",
            "start_ns": start,
            "end_ns": end,
            "status": "ok",
            "attributes": attrs,
            "events": [],
            "links": [],
        }
    )


def test_agentic_incidents_trace_prints_the_incident_run_trace_as_a_waterfall(tmp_path: Path) -> None:
    """The CLI in a subprocess, on span files as the processes write them: the trace the
    incident's run started in (not the trace of a repeated alert that only signalled it)."""
    traces = tmp_path / "traces"
    traces.mkdir()
    t1, t2 = "a" * 32, "b" * 32
    ms = 1_000_000
    (traces / "agentic-intake.jsonl").write_text(
        "\n".join(
            [
                _span(t1, "1" * 16, None, "POST /alerts", 0, 50 * ms),
                _span(
                    t1,
                    "2" * 16,
                    "1" * 16,
                    "SignalWithStartWorkflow:IncidentWorkflow",
                    ms,
                    40 * ms,
                    temporalWorkflowID="inc-x",
                ),
                _span(t2, "9" * 16, None, "POST /alerts", 900 * ms, 905 * ms),
                _span(
                    t2, "8" * 16, "9" * 16, "deliver incident", 901 * ms, 904 * ms, **{"agentic.incident_id": "inc-x"}
                ),
                "not json",
            ]
        )
        + "\n"
    )
    (traces / "agentic-worker.jsonl").write_text(
        "\n".join(
            [
                _span(
                    t1, "3" * 16, "2" * 16, "RunWorkflow:IncidentWorkflow", 60 * ms, 60 * ms, temporalWorkflowID="inc-x"
                ),
                _span(t1, "4" * 16, "3" * 16, "RunActivity:incident.propose", 70 * ms, 570 * ms),
                _span(t1, "5" * 16, "4" * 16, "chat smollm2", 80 * ms, 560 * ms),
            ]
        )
        + "\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(AGENTIC_DATA_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    run = subprocess.run(
        [sys.executable, "-m", "workers.cli", "incidents", "trace", "inc-x"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert f"trace {t1}  5 spans  570.0 ms" in run.stdout and t2 not in run.stdout
    names = [line.split("  ")[-1].strip() for line in lines[2:]]
    assert [n.split(" [")[0].strip() for n in names] == [
        "POST /alerts",
        "SignalWithStartWorkflow:IncidentWorkflow",
        "RunWorkflow:IncidentWorkflow",
        "RunActivity:incident.propose",
        "chat smollm2",
    ]
    chat = next(line for line in lines if "chat smollm2" in line)
    assert chat.split()[:2] == ["80.0", "480.0"] and "█" in chat  # start and duration in ms, a bar
    missing = subprocess.run(
        [sys.executable, "-m", "workers.cli", "incidents", "trace", "inc-none"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0 and "no trace names incident inc-none" in missing.stderr


def test_urls_lose_their_query_values_user_info_and_bot_token_and_headers_are_never_exported(monkeypatch) -> None:
    """What the HTTP instrumentations (ASGI, httpx) put on spans: every query value goes (the names
    stay), so does a URL's user-info and a Telegram bot token in its path; header attributes
    (`OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`) are dropped whole."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    plain = "opaqueValue123"  # no pattern of the redactor would find it: only the URL rule does
    bot = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    mem = InMemorySpanExporter()
    with (
        _provider(mem)
        .get_tracer("opentelemetry.instrumentation.httpx")
        .start_as_current_span(
            "GET",
            attributes={
                "url.full": f"https://user:pw{plain}@api.example.com/bot{bot}/getMe?code={plain}&flag&n=2#frag",
                "url.query": f"state={plain}",
                "http.target": f"/callback?code={plain}",
                "url.path": "/callback",
                "http.request.header.authorization": (f"Bearer {plain}",),
                "http.response.header.set_cookie": (f"s={plain}",),
                "http.response.status_code": 200,
            },
        )
    ):
        pass
    [span] = mem.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["url.full"] == "https://api.example.com/botREDACTED/getMe?code=REDACTED&REDACTED&n=REDACTED"
    assert attrs["url.query"] == "state=REDACTED" and attrs["http.target"] == "/callback?code=REDACTED"
    assert attrs["url.path"] == "/callback" and attrs["http.response.status_code"] == 200
    assert not [k for k in attrs if ".header." in k]
    assert plain not in json.dumps(attrs) and bot not in json.dumps(attrs)
    assert tracing.redact_url("not a url") == "not a url" and tracing.redact_query("") == ""


def test_library_spans_only_join_a_trace(monkeypatch) -> None:
    """The provider the httpx instrumentation gets: a span only under a current span (a health
    probe or a poll outside any request makes none), and then a child of it."""
    from opentelemetry import trace

    from activities.telemetry.libraries import ChildSpansOnly

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    mem = InMemorySpanExporter()
    provider = _provider(mem)
    monkeypatch.setattr(trace, "get_tracer", lambda *a, **k: provider.get_tracer(*a[:1]))
    child_only = ChildSpansOnly().get_tracer("lib")
    with child_only.start_as_current_span("alone") as alone:
        assert not alone.is_recording()
    assert not child_only.start_span("alone too").is_recording()
    with provider.get_tracer("app").start_as_current_span("request") as request, child_only.start_as_current_span("q"):
        pass
    names = {s.name: s for s in mem.get_finished_spans()}
    assert sorted(names) == ["q", "request"]
    assert names["q"].parent is not None and names["q"].parent.span_id == request.get_span_context().span_id
