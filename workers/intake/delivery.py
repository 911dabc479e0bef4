"""The intake's state and its way to Temporal: the lazily connected client, the cached
health check, authorization and body reading, and the signal-with-start of each group's
incident."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.telemetry import tracing
from agentic_core import policy
from agentic_core import search_attributes as sa
from agentic_core.alerts import (
    AlertGroup,
    AlertStatus,
    redact_group,
)
from agentic_core.incident import (
    SIGNAL_ALERTS,
    AlertsSignal,
    IncidentConfig,
    IncidentInput,
    IncidentStatus,
    group_annotations,
)
from agentic_core.wording import counted
from workers.errors import AgenticError
from workers.intake.errors import IntakeError, TemporalUnavailable, _is_json, _load_json, _unauthorized
from workers.settings import Settings
from workflows.incident import IncidentWorkflow

log = logging.getLogger("agentic.intake")

TEMPORAL_TIMEOUT_S = 10.0  # one signal-with-start, connecting included (the SDK retries inside it)
CONNECT_TIMEOUT_S = 5.0
CONNECT_BACKOFF_S = 1.0  # after a failed connect, answer 503 at once for this long
HEALTH_TTL_S = 3.0  # `/healthz` answers from a cached check this long
EVENT_CONCURRENCY = 8  # incidents signalled at once for one `/events` list

ClientFactory = Callable[[], Awaitable[Client]]


# --------------------------------------------------------------------------- the intake


def incident_config(settings: Settings) -> IncidentConfig:
    """The knobs every new incident starts with (workflows never read the environment)."""
    return IncidentConfig(
        approval_mode=settings.approval_mode,
        approvers=settings.approver_list,
        confidence_threshold=settings.confidence_threshold,
        remind_after_s=settings.remind_after_s,
        escalate_after_s=settings.escalate_after_s,
        expire_after_s=settings.expire_after_s,
        verify_window_s=settings.verify_window_s,
        investigate_max_calls=settings.investigate_max_calls,
        investigate_budget_s=settings.investigate_budget_s,
        investigate_model_calls=settings.investigate_model_calls,
        model_queue=settings.run_model_queue,
        tools_queue=settings.run_tools_queue,  # docs/scaling.md
    )


@dataclass
class Delivery:
    """What happened to one group."""

    incident_id: str
    signalled: bool  # False: a resolution with no incident running, nothing delivered
    run_id: str | None = None


@dataclass
class Intake:
    """The app's state: settings, the lazily connected Temporal client, the cached health check."""

    client_factory: ClientFactory
    settings: Settings
    token: bytes
    config: IncidentConfig
    _client: Client | None = None
    _connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _connect_failure: tuple[float, str] | None = None
    _health: tuple[float, bool, str] | None = None
    _health_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # False once the namespace refused the opening search attributes (not registered on it)
    _with_attributes: bool = True

    # ---- Temporal ------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """Where Temporal is: the connected client's address, else the configured one."""
        return self._client.service_client.config.target_host if self._client else self.settings.temporal_target

    async def client(self) -> Client:
        """The client, connecting on first use, and again after a failure once CONNECT_BACKOFF_S has passed
        (so a burst of requests while Temporal is down gets quick 503s, not a queue of connect attempts)."""
        if self._client is not None:
            return self._client
        async with self._connect_lock:
            if self._client is not None:
                return self._client
            if self._connect_failure is not None and time.monotonic() - self._connect_failure[0] < CONNECT_BACKOFF_S:
                raise TemporalUnavailable(self._connect_failure[1])
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    self._client = await self.client_factory()
            except Exception as exc:
                if isinstance(exc, TimeoutError):
                    message = f"Temporal at {self.target} did not answer within {CONNECT_TIMEOUT_S:g}s"
                elif isinstance(exc, AgenticError):
                    message = str(exc)
                else:
                    message = f"cannot reach Temporal at {self.target}: {_one_line(exc)}"
                self._connect_failure = (time.monotonic(), message)
                raise TemporalUnavailable(message) from None
            self._connect_failure = None
            log.info("connected to Temporal at %s", self.target)
            return self._client

    async def temporal_health(self) -> tuple[bool, str]:
        """(reachable, detail), from a check at most HEALTH_TTL_S old."""
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < HEALTH_TTL_S:
            return self._health[1], self._health[2]
        async with self._health_lock:
            if self._health is not None and time.monotonic() - self._health[0] < HEALTH_TTL_S:
                return self._health[1], self._health[2]
            try:
                client = await self.client()
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    ok = await client.service_client.check_health(timeout=timedelta(seconds=3))
                result = (bool(ok), "serving" if ok else "not serving")
            except TemporalUnavailable as exc:
                result = (False, exc.message)
            except Exception as exc:
                result = (False, f"Temporal at {self.target} is unreachable: {_one_line(exc)}")
            self._health = (time.monotonic(), *result)
            return result

    async def deliver(self, group: AlertGroup) -> Delivery:
        """Signal-with-start the group's incident; a resolution only signals a running one."""
        client = await self.client()
        signal_arg = AlertsSignal(group=group)
        try:
            async with asyncio.timeout(TEMPORAL_TIMEOUT_S):
                if group.status == AlertStatus.RESOLVED:
                    handle = client.get_workflow_handle(group.incident_id)
                    try:
                        await handle.signal(SIGNAL_ALERTS, signal_arg)
                    except RPCError as exc:
                        if exc.status == RPCStatusCode.NOT_FOUND:  # closed, or never opened
                            return Delivery(group.incident_id, signalled=False)
                        raise
                    return Delivery(group.incident_id, signalled=True)
                try:
                    handle = await self._start(client, group, signal_arg)
                except RPCError as exc:
                    if not (self._with_attributes and _unknown_attribute(exc)):
                        raise
                    # A namespace without the platform's search attributes (an external Temporal
                    # `agentic up` did not register them on): the alert still opens its incident.
                    self._with_attributes = False
                    log.warning(
                        "Temporal's namespace refused the incident's search attributes (%s): incidents start without "
                        "them until the intake restarts; `agentic up` registers them (docs/architecture.md)",
                        _one_line(exc),
                    )
                    handle = await self._start(client, group, signal_arg)
                return Delivery(group.incident_id, signalled=True, run_id=handle.result_run_id)
        except TimeoutError:
            raise TemporalUnavailable(
                f"Temporal at {self.target} did not answer within {TEMPORAL_TIMEOUT_S:g}s"
            ) from None
        except RPCError as exc:
            raise TemporalUnavailable(
                f"Temporal at {self.target} refused or failed the request "
                f"({exc.status.name if exc.status is not None else 'unknown'}): {_one_line(exc)}"
            ) from None

    async def _start(self, client: Client, group: AlertGroup, signal_arg: AlertsSignal) -> WorkflowHandle[Any, Any]:
        return await client.start_workflow(
            IncidentWorkflow.run,
            IncidentInput(incident_id=group.incident_id, group=group, config=self.config),
            id=group.incident_id,
            task_queue=self.settings.task_queue,
            start_signal=SIGNAL_ALERTS,
            start_signal_args=[signal_arg],
            # a closed incident that fires again is a new run under the same id
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=_summary(group),
            search_attributes=_opening_attributes(group) if self._with_attributes else None,
        )

    # ---- requests ------------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise _unauthorized(
                "missing bearer token: send `Authorization: Bearer <AGENTIC_INTAKE_TOKEN>`", invalid=False
            )
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _unauthorized("the Authorization header must be `Bearer <token>`", invalid=True)
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self.token):
            raise _unauthorized("invalid bearer token", invalid=True)

    async def read_json(self, request: Request) -> Any:
        """The body as JSON, after the content-type and size checks."""
        content_type = request.headers.get("content-type", "")
        if not _is_json(content_type):
            shown = content_type.split(";", 1)[0].strip()[:100] or "none"
            raise IntakeError(415, f"Content-Type must be application/json (got {shown})")
        limit = self.settings.intake_max_body
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise IntakeError(400, "Content-Length is not a number") from None
            if length < 0:
                raise IntakeError(400, "Content-Length is negative")
            if length > limit:
                raise IntakeError(413, f"request body of {length} bytes is over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:  # a missing or lying Content-Length, or a chunked body
                    raise IntakeError(413, f"request body is over the limit of {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:  # gone, or cut off by the server's body deadline (http_limits)
            raise IntakeError(408, "the request body did not arrive in full") from None
        return _load_json(b"".join(chunks))

    def protect(self, group: AlertGroup) -> tuple[AlertGroup, int]:
        """The group with its secrets redacted (`redact_group`), and how many; as it came with
        AGENTIC_INTAKE_KEEP_SECRETS."""
        if self.settings.intake_keep_secrets:
            return group, 0
        return redact_group(group)

    async def deliver_all(self, groups: list[AlertGroup]) -> list[Delivery]:
        """Deliver every group: one incident's groups in order, different incidents concurrently."""
        if len(groups) == 1:
            with tracing.incident_span(groups[0].incident_id, own_trace=False):
                return [await self.deliver(groups[0])]
        by_incident: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by_incident.setdefault(g.incident_id, []).append(i)
        results: list[Delivery | None] = [None] * len(groups)
        gate = asyncio.Semaphore(EVENT_CONCURRENCY)

        async def one_incident(indexes: list[int]) -> None:
            async with gate:
                for i in indexes:
                    with tracing.incident_span(groups[i].incident_id, own_trace=True):
                        results[i] = await self.deliver(groups[i])

        outcome = await asyncio.gather(*(one_incident(ix) for ix in by_incident.values()), return_exceptions=True)
        failures = [r for r in outcome if isinstance(r, BaseException)]
        if failures:
            delivered = _unique(r.incident_id for r in results if r is not None and r.signalled)
            first = failures[0]
            if isinstance(first, TemporalUnavailable):
                raise TemporalUnavailable(first.message, delivered=delivered)
            raise first
        return [r for r in results if r is not None]


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _redacted(secrets: int) -> str:
    return f"; {counted(secrets, 'secret')} redacted" if secrets else ""


def _opening_attributes(group: AlertGroup) -> TypedSearchAttributes:
    """The search attributes a new incident run starts with: its status, and the alert's name,
    severity and category as its triage stage will set them (the same pure `policy.triage`), so
    `agentic incidents list`, the console and the Web UI show what fired from the run's first
    moment, not blanks until the worker has triaged it. Ignored when the run already exists (a
    signal-with-start to a running incident only signals)."""
    tri = policy.triage(group.labels, group_annotations(group))
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.INCIDENT_STATUS, IncidentStatus.OPEN.value),
            SearchAttributePair(sa.INCIDENT_SEVERITY, tri.severity.value),
            SearchAttributePair(sa.INCIDENT_CATEGORY, tri.category.value),
            *([SearchAttributePair(sa.ALERT_NAME, sa.keyword(tri.alertname))] if tri.alertname else []),
        ]
    )


def _unknown_attribute(exc: RPCError) -> bool:
    """Temporal's refusal of a search attribute the namespace does not define."""
    return exc.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in str(exc).lower()


def _summary(group: AlertGroup) -> str:
    """One line for the Temporal UI: alert name and summary (labels, not secrets)."""
    name = group.labels.get("alertname", "") or group.group_key
    first = group.alerts[0].summary if group.alerts else ""
    text = f"{name}: {first}" if first and first != name else name
    return text.replace("\n", " ")[:200]


def _accepted(deliveries: list[Delivery], **counts: int) -> JSONResponse:
    body: dict[str, Any] = {
        "accepted": True,
        "incidents": _unique(d.incident_id for d in deliveries if d.signalled),
        **counts,
    }
    ignored = _unique(d.incident_id for d in deliveries if not d.signalled)
    if ignored:
        body["ignored"] = [
            {"incident_id": i, "reason": "resolved, and no incident of this group is open: nothing to do"}
            for i in ignored
        ]
    return JSONResponse(body, status_code=202)
