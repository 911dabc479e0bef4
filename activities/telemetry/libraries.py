"""Spans from the libraries the platform's processes use (docs/observability.md): httpx (the
standard `opentelemetry-instrumentation-httpx`) and asyncpg (see below). Both make spans only
inside a trace that is already going (an incident's, an agent run's): a health probe, the bot's
long poll or a console page's query, with no request span around it, would otherwise be a trace
of one span each, thousands a day, with nothing to connect them to.

- httpx, not httpx2: the `mcp` SDK speaks over httpx2 and makes its own MCP spans (and carries the
  context in the request's `_meta`); instrumenting its transport would trace the SDK a second time.
  What is left on httpx: the model calls of groups with one endpoint, made with the OpenAI client
  (a `POST` under the `chat <model>` span; LiteLLM's, for pools with replicas, go over aiohttp), the web
  tool server's fetches, the rollout's probes. No headers are captured, and the redacting
  processor drops query values from every URL (`tracing.redact_url`).
- asyncpg: `opentelemetry-instrumentation-asyncpg` has no release for semantic-conventions
  0.66b2 (its newest, 0.66b1, pins `opentelemetry-semantic-conventions==0.66b1`, which
  opentelemetry-sdk 1.45.2 cannot be installed with; DEPENDENCIES.md). The same spans are made
  here the way it makes them: one CLIENT span per query of `Connection.execute`, `executemany`,
  `fetch`, `fetchval`, `fetchrow` (the pool's methods and a transaction's BEGIN/COMMIT go through
  them), named by the statement's operation, with the stable database conventions
  (`db.system.name`, `db.namespace`, `db.operation.name`, `db.query.text`, `server.address`,
  `server.port`) and never the query's parameters.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

log = logging.getLogger("agentic.telemetry")

_QUERY_TEXT_MAX = 1000
_ASYNCPG_METHODS = ("execute", "executemany", "fetch", "fetchval", "fetchrow")
_LEADING_COMMENT = re.compile(r"^\s*(/\*.*?\*/\s*)+", re.S)
_instrumented: set[str] = set()
_db_tracer = trace.get_tracer("agentic-platform.asyncpg")  # follows the provider installed later


def in_trace() -> bool:
    """Whether a span is current (a library span then has a parent to join)."""
    return trace.get_current_span().get_span_context().is_valid


class _ChildTracer(trace.Tracer):
    """A tracer that starts spans only under a current span (else the non-recording INVALID_SPAN)."""

    def __init__(self, inner: trace.Tracer) -> None:
        self._inner = inner

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> trace.Span:
        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self._inner.start_span(name, context, *args, **kwargs)

    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Any = None, *args: Any, **kwargs: Any
    ) -> Iterator[trace.Span]:
        if not trace.get_current_span(context).get_span_context().is_valid:
            yield trace.INVALID_SPAN
            return
        with self._inner.start_as_current_span(name, context, *args, **kwargs) as span:
            yield span


class ChildSpansOnly(trace.TracerProvider):
    """The process's provider (looked up when a tracer is asked for), for spans that only join a trace."""

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        inner = trace.get_tracer(instrumenting_module_name, instrumenting_library_version, None, schema_url, attributes)
        return _ChildTracer(inner)


def instrument_httpx() -> bool:
    """httpx clients (not httpx2: the `mcp` SDK's) make CLIENT spans inside a trace."""
    if "httpx" in _instrumented:
        return False
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument(tracer_provider=ChildSpansOnly())
    _instrumented.add("httpx")
    return True


def _operation(query: str) -> str:
    words = _LEADING_COMMENT.sub("", query or "").split(None, 1)
    return words[0].rstrip(";").upper() if words else "postgresql"


def _db_attributes(conn: Any, query: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {"db.system.name": "postgresql", "db.operation.name": _operation(query)}
    database = getattr(getattr(conn, "_params", None), "database", None)
    if database:
        attrs["db.namespace"] = str(database)
    addr = getattr(conn, "_addr", None)
    if isinstance(addr, tuple) and len(addr) >= 2:
        attrs["server.address"], attrs["server.port"] = str(addr[0]), int(addr[1])
    elif isinstance(addr, str):
        attrs["server.address"] = addr
    if query:
        attrs["db.query.text"] = query.strip()[:_QUERY_TEXT_MAX]
    return attrs


def _traced_query(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    async def traced(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if not in_trace():
            return await func(self, query, *args, **kwargs)
        with _db_tracer.start_as_current_span(
            _operation(query), kind=SpanKind.CLIENT, attributes=_db_attributes(self, query)
        ):
            return await func(self, query, *args, **kwargs)

    traced.__agentic_traced__ = True  # type: ignore[attr-defined]
    return traced


def instrument_asyncpg() -> bool:
    """asyncpg queries make CLIENT spans inside a trace (the methods of `asyncpg.Connection`)."""
    if "asyncpg" in _instrumented:
        return False
    import asyncpg.connection

    cls = asyncpg.connection.Connection
    for name in _ASYNCPG_METHODS:
        method = getattr(cls, name)
        if not getattr(method, "__agentic_traced__", False):
            setattr(cls, name, _traced_query(method))
    _instrumented.add("asyncpg")
    return True


def instrument() -> None:
    """Both, once per process; a library that cannot be instrumented is logged and left as it is."""
    for name, fn in (("httpx", instrument_httpx), ("asyncpg", instrument_asyncpg)):
        try:
            fn()
        except Exception as exc:
            log.warning("%s is not traced in this process: %s", name, exc)
