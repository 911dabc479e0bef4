"""Wave 6's checks of the platform's own telemetry (docs/observability.md): Prometheus holds the
platform's metrics (`platform_metrics_scraped`), and the tracing backend holds one complete trace
(`trace_complete`: Tempo's HTTP API; spans connected, the names asked for present)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
from temporalio import activity

from agentic_core.rollout import CheckInput, CheckResult

DEFAULT_SERIES = (
    "agentic_alerts_received_total",
    "agentic_incidents_opened_total",
    "agentic_model_calls_total",
    "agentic_tool_calls_total",
)
DEFAULT_SPANS = ("POST /alerts", "RunWorkflow:IncidentWorkflow", "RunActivity:incident.propose")


def _span_id(value: Any) -> str:
    """Tempo answers OTLP JSON: span ids base64 (protobuf JSON) or hex; compare them as hex."""
    text = str(value or "")
    if len(text) == 16 and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.lower()
    try:
        return base64.b64decode(text).hex()
    except ValueError:
        return text


def _spans(doc: dict[str, Any]) -> list[dict[str, Any]]:
    doc = doc.get("trace") or doc  # Tempo's v2 API wraps it
    batches = doc.get("batches") or doc.get("resourceSpans") or []
    out: list[dict[str, Any]] = []
    for b in batches:
        for scope in b.get("scopeSpans") or b.get("instrumentationLibrarySpans") or []:
            out.extend(scope.get("spans") or [])
    return out


class TelemetryChecks:
    def __init__(self, http: httpx.AsyncClient | None = None) -> None:
        self.http = http  # one is made per check when None

    async def _client(self) -> tuple[httpx.AsyncClient, bool]:
        return (self.http, False) if self.http is not None else (httpx.AsyncClient(timeout=20.0), True)

    @activity.defn(name="rollout.check_platform_metrics")
    async def check_platform_metrics(self, inp: CheckInput) -> CheckResult:
        """`params.url`: Prometheus; `params.series`: metric names that must have a series."""
        p = inp.check.params
        url = str(p.get("url", "")).rstrip("/")
        series = [str(s) for s in p.get("series", DEFAULT_SERIES)]
        http, own = await self._client()
        missing: list[str] = []
        try:
            for name in series:
                r = await http.get(f"{url}/api/v1/query", params={"query": f"count({name})"})
                r.raise_for_status()
                if not r.json().get("data", {}).get("result"):
                    missing.append(name)
        except (httpx.HTTPError, ValueError) as exc:
            return CheckResult(name=inp.check.name, passed=False, detail=f"Prometheus at {url}: {exc}")
        finally:
            if own:
                await http.aclose()
        if missing:
            return CheckResult(name=inp.check.name, passed=False, detail=f"no series for {', '.join(missing)}")
        return CheckResult(name=inp.check.name, passed=True, detail=f"{len(series)} metrics scraped")

    @activity.defn(name="rollout.check_trace")
    async def check_trace(self, inp: CheckInput) -> CheckResult:
        """`params.url`: Tempo; `params.service` (default agentic-intake); `params.spans`: names a
        complete incident trace has. Passes when one recent trace has them all and no span whose
        parent is missing from the trace."""
        p = inp.check.params
        url = str(p.get("url", "")).rstrip("/")
        service = str(p.get("service", "agentic-intake"))
        wanted = {str(s) for s in p.get("spans", DEFAULT_SPANS)}
        http, own = await self._client()
        seen = 0
        try:
            r = await http.get(f"{url}/api/search", params={"tags": f"service.name={service}", "limit": 20})
            r.raise_for_status()
            for t in r.json().get("traces") or []:
                tr = await http.get(f"{url}/api/traces/{t['traceID']}")
                if tr.status_code != 200:
                    continue
                seen += 1
                spans = _spans(tr.json())
                ids = {_span_id(s.get("spanId")) for s in spans}
                names = {str(s.get("name")) for s in spans}
                orphans = [s for s in spans if s.get("parentSpanId") and _span_id(s["parentSpanId"]) not in ids]
                if wanted <= names and not orphans:
                    return CheckResult(
                        name=inp.check.name, passed=True, detail=f"trace {t['traceID']}: {len(spans)} spans, connected"
                    )
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            return CheckResult(name=inp.check.name, passed=False, detail=f"Tempo at {url}: {exc}")
        finally:
            if own:
                await http.aclose()
        return CheckResult(
            name=inp.check.name,
            passed=False,
            detail=f"none of {seen} recent {service} traces is complete (wanted {', '.join(sorted(wanted))})",
        )

    def all(self) -> list[Callable[..., Any]]:
        return [self.check_platform_metrics, self.check_trace]
