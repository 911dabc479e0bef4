"""The MCP metrics server: Prometheus's HTTP API (and Alertmanager's) as read-only tools over
streamable HTTP at /mcp.

    python -m workers.toolservers.metrics --host 127.0.0.1 --port 8095 \\
        --prometheus-url http://prometheus:9090 [--alertmanager-url http://alertmanager:9093] \\
        [--prometheus-username USER] [--token-env AGENTIC_MCP_TOKEN]

Tools (all read-only, typed arguments and results):

  prom_query(query, time?, max_series?)                       GET /api/v1/query
  prom_query_range(query, start?, end?, step?, max_series?, max_points?)
                                                              GET /api/v1/query_range
  prom_alerts(state?, alertname?, limit?)                     GET /api/v1/alerts, Alertmanager GET /api/v2/alerts
  prom_targets(health?, job?, limit?)                         GET /api/v1/targets
  prom_rules(kind?, state?, group?, name?, limit?)            GET /api/v1/rules

Every result is bounded and says when it was cut: at most `max_series` series; a range query at
most `max_points` points per series (the step is raised to fit, and the result says from what)
and 5,000 points in all; at most `limit` alerts, targets or rules. Times are RFC 3339, unix
seconds, `now`, or `now-1h` / `-30m` (Prometheus durations: ms, s, m, h, d, w, y).

Errors are tool errors a human and a model can act on: a query Prometheus refuses says what
Prometheus said ("parse error: ...; fix the PromQL"), one it cannot run says to narrow it, an
unreachable Prometheus names its URL and AGENTIC_PROMETHEUS_URL, refused credentials name the
settings. Alertmanager is optional (AGENTIC_ALERTMANAGER_URL): when it does not answer,
`prom_alerts` still returns Prometheus's alerts and says why Alertmanager's are missing.

- A secured Prometheus: a bearer token from AGENTIC_PROMETHEUS_TOKEN, or basic auth with
  AGENTIC_PROMETHEUS_USERNAME (`--prometheus-username`) and AGENTIC_PROMETHEUS_PASSWORD; secrets
  only ever from the environment. Alertmanager gets no credentials.
- Authentication of MCP clients, /healthz, start-up errors (exit 2) and SIGTERM as in
  workers.toolservers.infra.
"""

from __future__ import annotations

import argparse
import math
import os
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from workers.process import StartupError
from workers.toolservers.common import (
    READ_ONLY,
    env_default,
    new_server,
    tool,
)
from workers.toolservers.metrics.client import (
    TIME_FORMATS,
    Alertmanager,
    Prometheus,
    auth_headers,
    parse_duration,
    parse_time,
)
from workers.toolservers.metrics.models import (
    AlertsResult,
    AmAlert,
    PromAlert,
    QueryResult,
    RangeResult,
    Rule,
    RulesResult,
    Target,
    TargetsResult,
    annotations_of,
    labels_of,
    point,
    series_of,
    short,
)
from workers.toolservers.serving import Launch, Serving, ToolServer

__all__ = ["build_server", "main", "parse_duration", "parse_time"]

SERVER_NAME = "agentic-metrics"
MAX_TOTAL_POINTS = 5_000  # of a range query, all series together
MAX_QUERY_CHARS = 4_000

# --------------------------------------------------------------------------- argument types

Query = Annotated[
    str,
    Field(
        description='PromQL, e.g. rate(http_requests_total{job="api"}[5m])', min_length=1, max_length=MAX_QUERY_CHARS
    ),
]
Time = Annotated[str, Field(description=f"a time: {TIME_FORMATS}", min_length=1, max_length=64)]


def build_server(
    prometheus: Prometheus,
    alertmanager: Alertmanager | None = None,
    *,
    token: str | None = None,
    issuer_url: str = "http://127.0.0.1",
    clock: Any = None,
) -> MCPServer:
    """The MCP server with its tools over `prometheus` (and `alertmanager` when configured).
    `clock`: the time now in unix seconds (tests pass their own)."""

    def now() -> float:
        return float(clock()) if clock is not None else datetime.now(UTC).timestamp()

    def when(text: str, ref: float | None = None) -> float:
        """`text` as unix seconds; relative times from `ref` (default: now)."""
        try:
            return parse_time(text, now() if ref is None else ref)
        except ValueError as exc:
            raise ToolError(str(exc)) from None

    async def prom_query(
        query: Query,
        time: Annotated[str | None, Field(description=f"evaluation time (default: now): {TIME_FORMATS}")] = None,
        max_series: Annotated[int, Field(description="most series to return", ge=1, le=200)] = 20,
    ) -> QueryResult:
        """Run an instant PromQL query (GET /api/v1/query): the value of each series at one time,
        e.g. container_memory_working_set_bytes{namespace="media"} or up == 0."""
        at = when(time) if time is not None else None
        params: dict[str, Any] = {"query": query, **({"time": at} if at is not None else {})}
        data, warnings = await prometheus.get("query", params, query=query)
        kind = str(data.get("resultType", "")) if isinstance(data, dict) else ""
        raw = data.get("result") if isinstance(data, dict) else None
        if kind in ("scalar", "string"):
            scalar = point(raw)
            return QueryResult(
                query=query,
                result_type=kind,
                time=at,
                scalar=scalar,
                series=[],
                series_total=0,
                truncated=False,
                warnings=warnings,
            )
        series, total = series_of(raw if isinstance(raw, list) else [], max_series, ranged=kind == "matrix")
        cut = total > len(series)
        return QueryResult(
            query=query,
            result_type=kind,
            time=at,
            series=series,
            series_total=total,
            truncated=cut,
            warnings=warnings,
            note=f"{total} series; the first {len(series)} are shown (max_series={max_series})" if cut else "",
        )

    async def prom_query_range(
        query: Query,
        start: Annotated[str, Field(description=f"start of the range: {TIME_FORMATS}", max_length=64)] = "now-1h",
        end: Annotated[str, Field(description=f"end of the range: {TIME_FORMATS}", max_length=64)] = "now",
        step: Annotated[
            str | None,
            Field(description="resolution, e.g. 15s, 1m (default: the range split into max_points)", max_length=32),
        ] = None,
        max_series: Annotated[int, Field(description="most series to return", ge=1, le=50)] = 10,
        max_points: Annotated[int, Field(description="most points per series", ge=2, le=500)] = 120,
    ) -> RangeResult:
        """Run a PromQL range query (GET /api/v1/query_range): each series' values over time, with
        its last, smallest and largest value, e.g. the memory working set of a pod over the
        last hour. Bounded: the step is raised when the range would give more than max_points."""
        ref = now()  # both ends relative to the same now
        t0, t1 = when(start, ref), when(end, ref)
        if t1 <= t0:
            raise ToolError(f"the range is empty: end ({end}) must be after start ({start})")
        span = t1 - t0
        notes: list[str] = []
        auto = max(span / (max_points - 1), 1.0)
        try:
            wanted = parse_duration(step) if step is not None else auto
        except ValueError as exc:
            raise ToolError(f"step: {exc}") from None
        if wanted <= 0:
            raise ToolError("step must be more than 0 (e.g. 15s)")
        used = wanted
        if span / wanted + 1 > max_points + 1e-6:  # (times are floats: allow for their rounding)
            used = math.ceil(span / (max_points - 1) - 1e-6)
            notes.append(f"step raised from {wanted:g}s to {used:g}s to keep at most {max_points} points per series")
        points = int(span / used + 1e-6) + 1
        series_cap = max(1, min(max_series, MAX_TOTAL_POINTS // points))
        params = {"query": query, "start": t0, "end": t1, "step": used}
        data, warnings = await prometheus.get("query_range", params, query=query)
        raw = data.get("result") if isinstance(data, dict) else None
        series, total = series_of(raw if isinstance(raw, list) else [], series_cap, ranged=True)
        if total > len(series):
            why = f"max_series={max_series}" if series_cap == max_series else f"{MAX_TOTAL_POINTS} points in all"
            notes.append(f"{total} series; the first {len(series)} are shown ({why})")
        return RangeResult(
            query=query,
            result_type=str(data.get("resultType", "matrix")) if isinstance(data, dict) else "matrix",
            series=series,
            series_total=total,
            truncated=total > len(series),
            warnings=warnings,
            note="; ".join(notes),
            start=t0,
            end=t1,
            step_s=used,
        )

    async def prom_alerts(
        state: Annotated[
            Literal["firing", "pending", "any"], Field(description="only Prometheus alerts in this state")
        ] = "any",
        alertname: Annotated[str | None, Field(description="only alerts with this alertname", max_length=200)] = None,
        limit: Annotated[int, Field(description="most alerts to return from each source", ge=1, le=500)] = 50,
    ) -> AlertsResult:
        """Active alerts: Prometheus's firing and pending alerts (GET /api/v1/alerts) and, when
        Alertmanager is configured, Alertmanager's active, silenced and inhibited ones."""
        data, _ = await prometheus.get("alerts")
        raw = data.get("alerts") if isinstance(data, dict) else []
        prom = [
            PromAlert(
                name=labels_of(a.get("labels")).get("alertname", ""),
                state=str(a.get("state", "")),
                labels=labels_of(a.get("labels")),
                annotations=annotations_of(a.get("annotations")),
                active_at=a.get("activeAt"),
                value=str(a["value"]) if a.get("value") is not None else None,
            )
            for a in (raw if isinstance(raw, list) else [])
            if isinstance(a, dict)
        ]
        prom = [a for a in prom if (state == "any" or a.state == state) and (alertname is None or a.name == alertname)]
        result = AlertsResult(prometheus=prom[:limit], prometheus_total=len(prom), truncated=len(prom) > limit)
        if alertmanager is not None:
            try:
                am = await alertmanager.alerts(alertname)
            except ToolError as exc:
                result.alertmanager_error = str(exc)
            else:
                result.alertmanager = [
                    AmAlert(
                        name=labels_of(a.get("labels")).get("alertname", ""),
                        state=str((a.get("status") or {}).get("state", "")),
                        labels=labels_of(a.get("labels")),
                        annotations=annotations_of(a.get("annotations")),
                        starts_at=a.get("startsAt"),
                        silenced_by=[str(s) for s in (a.get("status") or {}).get("silencedBy") or []],
                        inhibited_by=[str(s) for s in (a.get("status") or {}).get("inhibitedBy") or []],
                        receivers=[str(r.get("name", "")) for r in a.get("receivers") or [] if isinstance(r, dict)],
                    )
                    for a in am[:limit]
                ]
                result.alertmanager_total = len(am)
                result.truncated = result.truncated or len(am) > limit
        if result.truncated:
            result.note = f"more alerts than limit={limit}: narrow with state or alertname"
        return result

    async def prom_targets(
        health: Annotated[
            Literal["up", "down", "unknown", "any"], Field(description="only targets whose last scrape was this")
        ] = "any",
        job: Annotated[str | None, Field(description="only the targets of this job", max_length=200)] = None,
        limit: Annotated[int, Field(description="most targets to return", ge=1, le=500)] = 100,
    ) -> TargetsResult:
        """Scrape-target health (GET /api/v1/targets): each active target's job, instance, health,
        last scrape and last error; the unhealthy ones first."""
        data, _ = await prometheus.get("targets", {"state": "active"})
        raw = data.get("activeTargets") if isinstance(data, dict) else []
        targets = []
        for t in raw if isinstance(raw, list) else []:
            if not isinstance(t, dict):
                continue
            labels = labels_of(t.get("labels"))
            duration = t.get("lastScrapeDuration")
            targets.append(
                Target(
                    job=str(t.get("scrapePool") or labels.get("job", "")),
                    instance=labels.get("instance", ""),
                    health=str(t.get("health", "unknown")),
                    last_error=short(str(t.get("lastError") or "")),
                    last_scrape=t.get("lastScrape"),
                    last_scrape_duration_s=float(duration) if isinstance(duration, int | float) else None,
                    scrape_url=str(t.get("scrapeUrl", "")),
                    labels=labels,
                )
            )
        count = {h: sum(1 for t in targets if t.health == h) for h in ("up", "down", "unknown")}
        matched = [
            t
            for t in targets
            if (health == "any" or t.health == health) and (job is None or job in (t.job, t.labels.get("job")))
        ]
        matched.sort(key=lambda t: (t.health == "up", t.job, t.instance))
        return TargetsResult(
            targets=matched[:limit],
            total=len(matched),
            up=count["up"],
            down=count["down"],
            unknown=count["unknown"],
            truncated=len(matched) > limit,
        )

    async def prom_rules(
        kind: Annotated[Literal["alerting", "recording", "any"], Field(description="only rules of this kind")] = "any",
        state: Annotated[
            Literal["firing", "pending", "inactive", "any"], Field(description="only alerting rules in this state")
        ] = "any",
        group: Annotated[str | None, Field(description="only the rules of this group", max_length=200)] = None,
        name: Annotated[
            str | None, Field(description="only rules whose name contains this text", max_length=200)
        ] = None,
        limit: Annotated[int, Field(description="most rules to return", ge=1, le=500)] = 100,
    ) -> RulesResult:
        """Alerting and recording rules with their state (GET /api/v1/rules): health (a rule whose
        last evaluation failed says why), alerting rules' state and active alerts."""
        params = {"type": {"alerting": "alert", "recording": "record"}[kind]} if kind != "any" else None
        data, _ = await prometheus.get("rules", params)
        groups = data.get("groups") if isinstance(data, dict) else []
        rules: list[Rule] = []
        for g in groups if isinstance(groups, list) else []:
            if not isinstance(g, dict) or (group is not None and g.get("name") != group):
                continue
            for r in g.get("rules") or []:
                if not isinstance(r, dict):
                    continue
                alerting = r.get("type") == "alerting"
                duration = r.get("duration")
                rules.append(
                    Rule(
                        group=str(g.get("name", "")),
                        name=str(r.get("name", "")),
                        kind="alerting" if alerting else "recording",
                        query=short(str(r.get("query", ""))),
                        health=str(r.get("health", "unknown")),
                        last_error=short(str(r.get("lastError") or "")),
                        state=str(r.get("state")) if alerting else None,
                        active_alerts=len(r.get("alerts") or []) if alerting else 0,
                        for_s=float(duration) if alerting and isinstance(duration, int | float) else None,
                    )
                )
        matched = [
            r
            for r in rules
            if (state == "any" or r.state == state) and (name is None or name.lower() in r.name.lower())
        ]
        return RulesResult(
            rules=matched[:limit],
            total=len(matched),
            unhealthy=[r.name for r in matched if r.health == "err"][:50],
            firing=[r.name for r in matched if r.state == "firing"][:50],
            truncated=len(matched) > limit,
        )

    tools = [
        tool(prom_query, "PromQL instant query", READ_ONLY),
        tool(prom_query_range, "PromQL range query", READ_ONLY),
        tool(prom_alerts, "Active alerts", READ_ONLY),
        tool(prom_targets, "Scrape-target health", READ_ONLY),
        tool(prom_rules, "Alerting and recording rules", READ_ONLY),
    ]
    return new_server(
        SERVER_NAME,
        title="agentic-platform metrics tools",
        instructions="Prometheus tools (read-only): PromQL instant and range queries, active alerts "
        "(Prometheus and Alertmanager), scrape-target health, rules and their state.",
        tools=tools,
        token=token,
        issuer_url=issuer_url,
        health=lambda: {
            "tools": len(tools),
            "prometheus": prometheus.url,
            "alertmanager": alertmanager.url if alertmanager is not None else None,
        },
    )


# --------------------------------------------------------------------------- the process


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prometheus-url",
        default=env_default("AGENTIC_PROMETHEUS_URL"),
        help="Prometheus base URL (default: $AGENTIC_PROMETHEUS_URL); a bearer token: $AGENTIC_PROMETHEUS_TOKEN",
    )
    p.add_argument(
        "--alertmanager-url",
        default=env_default("AGENTIC_ALERTMANAGER_URL"),
        help="Alertmanager base URL (default: $AGENTIC_ALERTMANAGER_URL; empty: Prometheus's alerts only)",
    )
    p.add_argument(
        "--prometheus-username",
        default=env_default("AGENTIC_PROMETHEUS_USERNAME"),
        help="basic-auth user of a secured Prometheus (default: $AGENTIC_PROMETHEUS_USERNAME); "
        "its password: $AGENTIC_PROMETHEUS_PASSWORD",
    )


def _url(value: str | None, setting: str) -> str | None:
    if value and not value.startswith(("http://", "https://")):
        raise StartupError(f"error: {setting}: {value!r} is not an http(s) URL")
    return value or None


def prometheus_auth(username: str | None) -> dict[str, str]:
    """The Authorization header from AGENTIC_PROMETHEUS_TOKEN, or basic auth (a user and
    AGENTIC_PROMETHEUS_PASSWORD); refuses half or both of them."""
    token = os.environ.get("AGENTIC_PROMETHEUS_TOKEN", "").strip() or None
    password = os.environ.get("AGENTIC_PROMETHEUS_PASSWORD", "").strip() or None
    if token and (username or password):
        raise StartupError(
            "error: set either AGENTIC_PROMETHEUS_TOKEN (a bearer token) or AGENTIC_PROMETHEUS_USERNAME and "
            "AGENTIC_PROMETHEUS_PASSWORD (basic auth), not both"
        )
    if bool(username) != bool(password):
        raise StartupError(
            "error: basic auth to Prometheus needs both AGENTIC_PROMETHEUS_USERNAME and AGENTIC_PROMETHEUS_PASSWORD"
        )
    return auth_headers(token, username, password)


def configure(args: argparse.Namespace) -> Launch:
    url = _url(args.prometheus_url, "AGENTIC_PROMETHEUS_URL")
    if url is None:
        raise StartupError(
            "error: no Prometheus URL: set AGENTIC_PROMETHEUS_URL (--prometheus-url), e.g. http://prometheus:9090"
        )
    am_url = _url(args.alertmanager_url, "AGENTIC_ALERTMANAGER_URL")
    headers = prometheus_auth(args.prometheus_username)

    def launch(token: str | None, issuer: str) -> Serving:
        prometheus = Prometheus(url, headers)
        alertmanager = Alertmanager(am_url) if am_url else None
        server = build_server(prometheus, alertmanager, token=token, issuer_url=issuer)

        async def close() -> None:
            await prometheus.close()
            if alertmanager is not None:
                await alertmanager.close()

        auth = (
            "bearer token" if "Bearer" in headers.get("Authorization", "") else "basic auth" if headers else "no auth"
        )
        detail = f"Prometheus: {prometheus.url} ({auth}); Alertmanager: {am_url or 'not configured'}"
        return Serving(server, detail, on_stop=close)

    return launch


PROCESS = ToolServer(
    "mcp_metrics",
    "Prometheus/Alertmanager",
    port=8095,
    port_setting="AGENTIC_MCP_METRICS_PORT",
    serves="metrics tools",
    configure=configure,
    options=_options,
)
main = PROCESS.main
