"""The metrics MCP server's typed tool results (structured content, and each tool's output schema),
and the helpers that build them from the Prometheus API's JSON.

Every list is bounded; a result that was cut says so (`truncated`, `note`)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

MAX_ANNOTATION_CHARS = 500

Point = tuple[float, str]  # (unix seconds, the value as Prometheus writes it: "0.5", "NaN", "+Inf")


class Series(BaseModel):
    labels: dict[str, str] = Field(description="the series' labels (__name__ is the metric name)")
    value: Point | None = Field(default=None, description="instant query: the sample at the query's time")
    last: float | None = Field(default=None, description="range query: the last value")
    min: float | None = Field(default=None, description="range query: the smallest value")
    max: float | None = Field(default=None, description="range query: the largest value")
    values: list[Point] = Field(default_factory=list, description="range query: the points, oldest first")


class QueryResult(BaseModel):
    query: str
    result_type: str = Field(description="vector, matrix, scalar or string")
    time: float | None = Field(default=None, description="instant query: its evaluation time (unix seconds)")
    scalar: Point | None = Field(default=None, description="a scalar or string result")
    series: list[Series]
    series_total: int = Field(description="series the query returned (series holds at most max_series of them)")
    truncated: bool
    warnings: list[str] = Field(default_factory=list, description="what Prometheus warned about the query")
    note: str = Field(default="", description="what was cut or changed, in words")


class RangeResult(QueryResult):
    start: float
    end: float
    step_s: float = Field(
        description="the step used (raised from the one asked for when it would give too many points)"
    )


class PromAlert(BaseModel):
    name: str
    state: str = Field(description="firing or pending")
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    active_at: str | None = None
    value: str | None = Field(default=None, description="the rule expression's value when it last fired")


class AmAlert(BaseModel):
    name: str
    state: str = Field(description="active, suppressed or unprocessed")
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: str | None = None
    silenced_by: list[str] = Field(default_factory=list)
    inhibited_by: list[str] = Field(default_factory=list)
    receivers: list[str] = Field(default_factory=list)


class AlertsResult(BaseModel):
    prometheus: list[PromAlert]
    prometheus_total: int
    alertmanager: list[AmAlert] | None = Field(
        default=None, description="Alertmanager's active alerts (null: AGENTIC_ALERTMANAGER_URL is not set)"
    )
    alertmanager_total: int | None = None
    alertmanager_error: str | None = Field(default=None, description="why Alertmanager's alerts are missing")
    truncated: bool
    note: str = ""


class Target(BaseModel):
    job: str
    instance: str
    health: str = Field(description="up, down or unknown")
    last_error: str = ""
    last_scrape: str | None = None
    last_scrape_duration_s: float | None = None
    scrape_url: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class TargetsResult(BaseModel):
    targets: list[Target]
    total: int = Field(description="targets matching the filters (targets holds at most limit of them)")
    up: int
    down: int
    unknown: int
    truncated: bool


class Rule(BaseModel):
    group: str
    name: str
    kind: str = Field(description="alerting or recording")
    query: str
    health: str = Field(description="ok, err or unknown (err: the last evaluation failed)")
    last_error: str = ""
    state: str | None = Field(default=None, description="alerting rules: firing, pending or inactive")
    active_alerts: int = 0
    for_s: float | None = Field(default=None, description="alerting rules: how long the condition must hold")


class RulesResult(BaseModel):
    rules: list[Rule]
    total: int = Field(description="rules matching the filters (rules holds at most limit of them)")
    unhealthy: list[str] = Field(default_factory=list, description="rules whose last evaluation failed (at most 50)")
    firing: list[str] = Field(default_factory=list, description="alerting rules firing now (at most 50)")
    truncated: bool


# --------------------------------------------------------------------------- from the API's JSON


def finite(value: str) -> float | None:
    try:
        f = float(value)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def point(raw: Any) -> Point | None:
    if isinstance(raw, list) and len(raw) == 2:
        return float(raw[0]), str(raw[1])
    return None


def labels_of(raw: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def short(text: str, n: int = MAX_ANNOTATION_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def annotations_of(raw: Any) -> dict[str, str]:
    return {k: short(v) for k, v in labels_of(raw).items()}


def series_of(result: list[Any], max_series: int, *, ranged: bool) -> tuple[list[Series], int]:
    out: list[Series] = []
    for item in result[:max_series]:
        if not isinstance(item, dict):
            continue
        labels = labels_of(item.get("metric"))
        if not ranged:
            out.append(Series(labels=labels, value=point(item.get("value"))))
            continue
        points = [p for p in (point(v) for v in item.get("values") or []) if p is not None]
        numbers = [f for f in (finite(v) for _, v in points) if f is not None]
        last = finite(points[-1][1]) if points else None
        out.append(
            Series(
                labels=labels,
                values=points,
                last=last,
                min=min(numbers) if numbers else None,
                max=max(numbers) if numbers else None,
            )
        )
    return out, len(result)
