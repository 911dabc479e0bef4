"""The planner: asking the local model (and, when configured, the cloud) for an incident's
proposal, within bounds, and falling back to the best runbook's plan.

`PlannerConfig` holds every knob (the model's slots and timeouts, the inference mode, the
cloud group and its spending bounds); the worker builds it from the settings
(`workers.wiring.planner_config`) and `IncidentActivities` passes it to `Planner`, which holds
the per-process state (slots, the moving average of a call, the cloud calls of the last hour).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.incident.prompt import build_messages, proposal_generation_schema
from activities.telemetry import metrics
from agentic_core.incident import ProposeInput, ProposeResult
from agentic_core.models import InferenceMode, Proposal, ToolCall
from agentic_core.proposals import check_proposal, dropped_actions, fallback_proposal, ground_proposal
from agentic_core.redaction import PERSONAL_KINDS, SECRET, Redactor, describe_counts

log = logging.getLogger("agentic.incident")

PLANNER_GROUP = "planner"
CLOUD_GROUP = "cloud"
ESCALATE_BELOW = 0.5  # LOCAL_FIRST: a local answer less confident than this goes to the cloud
CLOUD_TIMEOUT_S = 20.0  # one cloud call; local (slot + call) and cloud stay within PROPOSE_TIMEOUT
CLOUD_MAX_CONCURRENT = 4  # cloud calls in flight at once (a burst must not become a bill)
CLOUD_MAX_PER_HOUR = 60  # cloud calls per rolling hour
MIN_CLOUD_S = 2.0  # less time than this left in the activity: the cloud is not asked
DEADLINE_MARGIN_S = 2.0  # the activity answers this long before its start-to-close timeout
MODEL_TIMEOUT_S = 25.0  # one planner attempt; two attempts and the back-off stay under a minute
MODEL_ATTEMPTS = 2  # attempts that may end in "model unavailable, retry"; the last one falls back


@dataclass(frozen=True)
class PlannerConfig:
    """The planner's knobs: the model group and its slots and timeouts, the inference mode, and
    the cloud group (None: not configured) with its spending bounds."""

    planner_group: str = PLANNER_GROUP
    model_timeout_s: float = MODEL_TIMEOUT_S
    model_attempts: int = MODEL_ATTEMPTS
    model_slots: int = 1
    slot_wait_s: float | None = None  # None: half the model timeout
    mode: InferenceMode = InferenceMode.LOCAL_FIRST
    cloud_group: str | None = None
    escalate_below: float = ESCALATE_BELOW
    cloud_timeout_s: float = CLOUD_TIMEOUT_S
    cloud_max_concurrent: int = CLOUD_MAX_CONCURRENT
    cloud_max_per_hour: int = CLOUD_MAX_PER_HOUR
    burst_cut: int = 0  # incidents refused the busy model within BURST_WINDOW_S that cut the call in flight (0: never)


BURST_WINDOW_S = 30.0  # the refusals `burst_cut` counts


def _attempt() -> int:
    try:
        return activity.info().attempt
    except RuntimeError:  # called outside an activity (a script, a test)
        return MODEL_ATTEMPTS


@dataclass
class _Asked:
    """What asking one model gave: a usable result, or why not (`retry`: unavailable on an
    attempt Temporal may retry; `model`: its unusable proposal, for the fallback's diagnosis;
    `counts`: items redacted from what was sent to the cloud)."""

    result: ProposeResult | None = None
    reason: str = ""
    retry: bool = False
    model: Proposal | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


class Planner:
    """Asks the models for a proposal (`propose`). `router` needs `structured(group, messages,
    schema)` (the `InferenceRouter`); `config` says which groups and within which bounds."""

    def __init__(self, router: Any, config: PlannerConfig | None = None) -> None:
        cfg = config or PlannerConfig()
        self.router = router
        self.config = cfg
        self.planner_group = cfg.planner_group
        self.model_timeout_s = cfg.model_timeout_s
        self.model_attempts = cfg.model_attempts
        # As many calls in flight as the pool serves at once (llama.cpp: one slot). A request
        # queued behind a busy model would time out anyway: wait a bounded time for a slot,
        # then fall back, so a burst of incidents reaches its questions quickly. A caller
        # whose expected wait (`expected_wait_s`) is already over that bound falls back at
        # once instead of sitting out the bound first.
        self.model_slots = cfg.model_slots
        self._model_slots = asyncio.Semaphore(cfg.model_slots)
        self.slot_wait_s = cfg.model_timeout_s / 2 if cfg.slot_wait_s is None else cfg.slot_wait_s
        self._waiting = 0  # callers queued for a slot
        self._call_s: float | None = None  # moving average of a model call's duration
        # A burst (`burst_cut` incidents refused the busy model within BURST_WINDOW_S) cuts the
        # calls in flight short: with the model on the worker's own CPU (the embedded
        # llama.cpp), one plan holds a core for seconds while every other incident of the
        # burst, already falling back, waits for CPU on its way to its question.
        self.burst_cut = cfg.burst_cut
        self._refused: collections.deque[float] = collections.deque()  # monotonic times
        self._calls: set[asyncio.Task[Any]] = set()  # local model calls in flight
        self._cut: set[asyncio.Task[Any]] = set()  # of those, the ones a burst cut short
        # The cloud: asked only with a group configured and a mode other than LOCAL_ONLY.
        self.mode = cfg.mode
        self.cloud_group = cfg.cloud_group
        self.escalate_below = cfg.escalate_below
        self.cloud_timeout_s = cfg.cloud_timeout_s
        # Spending bounds (per worker process): calls in flight, and calls in the last hour.
        self.cloud_max_concurrent = cfg.cloud_max_concurrent
        self.cloud_max_per_hour = cfg.cloud_max_per_hour
        self._cloud_inflight = 0
        self._cloud_calls: collections.deque[float] = collections.deque()  # monotonic start times

    def expected_wait_s(self) -> float:
        """How long a caller arriving now would wait for a model slot: 0 with a slot free, else
        one model call (the moving average of the timed calls; half the slot bound before any
        call was timed) per round of `model_slots` callers ahead of it, itself included."""
        if not self._model_slots.locked():
            return 0.0
        per_call = self._call_s if self._call_s is not None else self.slot_wait_s / 2
        return (self._waiting // self.model_slots + 1) * per_call

    def _in_burst(self) -> bool:
        """`burst_cut` incidents (or more) were refused the model within the last BURST_WINDOW_S.
        While that lasts, the calls in flight are cut and no call starts: a burst lasts as long
        as incidents keep coming faster than the model could plan them."""
        now = time.monotonic()
        while self._refused and now - self._refused[0] > BURST_WINDOW_S:
            self._refused.popleft()
        return bool(self.burst_cut) and len(self._refused) >= self.burst_cut

    def _burst_reason(self, what: str = "the model is left alone until it passes") -> str:
        return (
            f"the model is busy with other incidents (a burst: {len(self._refused)} refused it within "
            f"{BURST_WINDOW_S:g}s; {what})"
        )

    def _refuse(self) -> None:
        """One more incident refused the busy model; a burst of them cuts the calls in flight."""
        self._refused.append(time.monotonic())
        if self._in_burst():
            for call in [c for c in self._calls - self._cut if not c.done()]:
                log.warning("a burst of incidents (%d refused the model): cutting a plan in flight", len(self._refused))
                self._cut.add(call)
                call.cancel()

    def _timed_call(self, seconds: float) -> None:
        self._call_s = seconds if self._call_s is None else 0.7 * self._call_s + 0.3 * seconds

    async def propose(
        self, inp: ProposeInput, rejected: list[tuple[int, ToolCall, str]] | None = None
    ) -> ProposeResult:
        """The planner model's proposal, grounded in the recalled runbooks (`ground_proposal`: a
        runbook that fits supplies the plan, the model the diagnosis and confidence), or the
        best runbook's plan when no model can help.

        The local model: one call per attempt, bounded by `model_timeout_s`. An unreachable
        model is retried by Temporal for the first `model_attempts - 1` attempts; the last
        attempt, and any invalid answer (not valid JSON for `Proposal`, a tool not in
        `inp.tools`, arguments against the tool's schema), falls back at once. A busy model
        (no slot within `slot_wait_s`) falls back at once.

        The cloud (a `cloud_group` configured, mode not LOCAL_ONLY), always asked with the
        messages redacted (`agentic_core.redaction`), and within what is left of the activity's
        start-to-close timeout:
        - LOCAL_FIRST: when the local model is busy, unavailable, answers invalidly or less
          confidently than `escalate_below`. A usable cloud answer wins (source "cloud"); if
          the cloud fails too, a low-confidence local answer stands, otherwise the fallback.
        - CLOUD_FIRST: the cloud first; the local model (and then the fallback) when it fails.
        Personal data in the cloud's answer is restored; secrets never are, and a plan whose
        arguments refer to a redacted secret is refused. The note says why it escalated and
        how many items of each kind were redacted (`redactions`: counts only, never values).

        `rejected` (when given) collects every action a model proposed that could not be used
        (a tool not offered, bad arguments) and the writes dropped with them (`dropped_actions`),
        for the guardrail events.
        """
        started = time.monotonic()
        messages = build_messages(inp)
        if self.cloud_enabled and self.mode == InferenceMode.CLOUD_FIRST:
            cloud = await self._ask_cloud(inp, messages, None, started, rejected)
            if cloud.result is not None:
                return cloud.result
            log.warning("propose %s: %s; asking the local model", inp.incident_id, cloud.reason)
            local = await self._ask_local(inp, messages, limit_s=self._left_s(started), rejected=rejected)
            first = f"the cloud failed first ({cloud.reason})"
            if local.result is not None:
                r = local.result
                return r.model_copy(update={"note": _join(first, r.note), "redactions": cloud.counts})
            if local.retry:
                raise ApplicationError(_join(first, local.reason), type="InferenceUnavailable")
            return self._fallback(inp, _join(first, local.reason), local.model or cloud.model, cloud.counts)

        local = await self._ask_local(inp, messages, rejected=rejected)
        if not self.cloud_enabled:
            if local.result is not None:
                return local.result
            if local.retry:
                raise ApplicationError(local.reason, type="InferenceUnavailable")
            return self._fallback(inp, local.reason, local.model, {})
        if local.result is not None:
            confidence = local.result.proposal.confidence
            if confidence >= self.escalate_below:
                return local.result
            why = f"the local model's confidence {confidence:.2f} is below {self.escalate_below:g}"
        else:
            why = local.reason
        cloud = await self._ask_cloud(inp, messages, why, started, rejected)
        if cloud.result is not None:
            return cloud.result
        log.warning("propose %s: escalated (%s), but %s", inp.incident_id, why, cloud.reason)
        if local.result is not None:  # the local answer was usable, only not confident: it stands
            r = local.result
            note = _join(r.note, f"escalated to the cloud ({why}), but {cloud.reason}")
            return r.model_copy(update={"note": note, "redactions": cloud.counts})
        if local.retry:
            raise ApplicationError(f"{why}; the cloud failed too: {cloud.reason}", type="InferenceUnavailable")
        return self._fallback(
            inp, f"{why}; the cloud failed too: {cloud.reason}", local.model or cloud.model, cloud.counts
        )

    def _cloud_over_budget(self) -> str | None:
        """Why the cloud may not be asked now (its spending bounds), or None."""
        if self.cloud_max_per_hour <= 0:
            return "the cloud call budget is 0 per hour"
        now = time.monotonic()
        while self._cloud_calls and now - self._cloud_calls[0] >= 3600:
            self._cloud_calls.popleft()
        if len(self._cloud_calls) >= self.cloud_max_per_hour:
            return f"the cloud call budget ({self.cloud_max_per_hour} per hour) is spent"
        if self._cloud_inflight >= self.cloud_max_concurrent:
            n, bound = self._cloud_inflight, self.cloud_max_concurrent
            return f"the cloud is busy ({n} calls in flight, the bound is {bound})"
        return None

    @property
    def cloud_enabled(self) -> bool:
        return self.cloud_group is not None and self.mode != InferenceMode.LOCAL_ONLY

    def _fallback(
        self, inp: ProposeInput, reason: str, model: Proposal | None, counts: dict[str, int]
    ) -> ProposeResult:
        log.warning("propose %s: %s; falling back", inp.incident_id, reason)
        with metrics.safely():  # docs/scaling.md: the share of plans the busy model left to the runbook
            metrics.PLAN_FALLBACKS.labels("busy" if "busy" in reason else "other").inc()
        res = fallback_proposal(inp, reason, model=model)
        return res.model_copy(update={"redactions": dict(counts)}) if counts else res

    def _left_s(self, started: float) -> float | None:
        """Seconds left of this activity attempt's start-to-close timeout (less a margin to
        answer in), or None outside an activity or without a timeout."""
        try:
            budget = activity.info().start_to_close_timeout
        except RuntimeError:
            return None
        if not budget:
            return None
        return budget.total_seconds() - DEADLINE_MARGIN_S - (time.monotonic() - started)

    async def _ask_local(
        self,
        inp: ProposeInput,
        messages: list[dict[str, Any]],
        *,
        limit_s: float | None = None,
        rejected: list[tuple[int, ToolCall, str]] | None = None,
    ) -> _Asked:
        """One call of the local planner: a usable (grounded, checked) proposal, or why not.
        `limit_s` bounds the slot wait and the call together (what is left of the activity)."""
        from activities.inference.router import InferenceError, InferenceUnavailable

        timeout_s = self.model_timeout_s if limit_s is None else max(0.0, min(self.model_timeout_s, limit_s))
        slot_wait_s = self.slot_wait_s if limit_s is None else max(0.0, min(self.slot_wait_s, limit_s / 2))
        if self._in_burst():
            self._refuse()
            return _Asked(reason=self._burst_reason())
        expected = self.expected_wait_s()
        if expected > slot_wait_s:
            self._refuse()
            return _Asked(
                reason=f"the model is busy with other incidents ({self._waiting + 1} waiting for it, about "
                f"{expected:.0f}s expected, over the {slot_wait_s:g}s bound)"
            )
        self._waiting += 1
        waited = time.monotonic()
        try:
            await asyncio.wait_for(self._model_slots.acquire(), timeout=slot_wait_s)
        except TimeoutError:
            self._refuse()
            return _Asked(reason=f"the model is busy with other incidents (no free slot within {slot_wait_s:g}s)")
        finally:
            self._waiting -= 1
            with metrics.safely():  # the wait for a model slot (docs/scaling.md)
                metrics.MODEL_SLOT_WAIT.labels(self.planner_group, "planner").observe(time.monotonic() - waited)
        if self._in_burst():  # it began while this caller waited for the slot
            self._model_slots.release()
            self._refuse()
            return _Asked(reason=self._burst_reason())
        started = time.monotonic()
        call = asyncio.ensure_future(
            asyncio.wait_for(
                self.router.structured(
                    self.planner_group, messages, Proposal, narrow=proposal_generation_schema(inp.tools)
                ),
                timeout=timeout_s,
            )
        )
        self._calls.add(call)
        try:
            answer = await call
        except asyncio.CancelledError:
            if call not in self._cut:  # this activity itself was cancelled
                raise
            return _Asked(
                reason=self._burst_reason(
                    f"this plan was cut short after {time.monotonic() - started:.1f}s so their questions go first"
                )
            )
        except (InferenceUnavailable, TimeoutError) as exc:
            reason = (
                f"the model did not answer within {timeout_s:g}s"
                if isinstance(exc, TimeoutError)
                else f"the model is unavailable: {exc}"
            )
            return _Asked(reason=reason, retry=_attempt() < self.model_attempts)
        except InferenceError as exc:
            return _Asked(reason=f"the model failed: {exc}")
        finally:
            self._calls.discard(call)
            self._cut.discard(call)
            if not call.cancelled():  # a call cut short says nothing of a call's length
                self._timed_call(time.monotonic() - started)
            self._model_slots.release()

        proposal, note = ground_proposal(answer.value, inp)
        problem = check_proposal(proposal, inp)
        if problem is not None:
            if rejected is not None:
                rejected.extend(dropped_actions(proposal, inp))
            return _Asked(reason=f"invalid proposal: {problem}", model=proposal)
        model = str(getattr(answer, "model", ""))
        return _Asked(result=ProposeResult(proposal=proposal, source="llm", note=note, model=model))

    async def _ask_cloud(
        self,
        inp: ProposeInput,
        messages: list[dict[str, Any]],
        why: str | None,
        started: float,
        rejected: list[tuple[int, ToolCall, str]] | None = None,
    ) -> _Asked:
        """One call of the cloud group with the messages redacted; its answer with personal data
        restored, grounded and checked like the local one. `why`: why it escalated (None: the
        cloud comes first). `counts`: what was redacted (empty when nothing was sent)."""
        from activities.inference.router import InferenceError, InferenceUnavailable

        assert self.cloud_group is not None
        left = self._left_s(started)
        timeout_s = self.cloud_timeout_s if left is None else min(self.cloud_timeout_s, left)
        if timeout_s < MIN_CLOUD_S:
            return _Asked(reason=f"no time was left to ask the cloud ({max(timeout_s, 0):.1f}s)")
        over = self._cloud_over_budget()
        if over is not None:
            return _Asked(reason=over)
        redactor = Redactor()
        sent = redactor.redact_messages(messages)
        counts = redactor.counts
        self._cloud_inflight += 1
        self._cloud_calls.append(time.monotonic())
        try:
            answer = await asyncio.wait_for(self.router.structured(self.cloud_group, sent, Proposal), timeout=timeout_s)
        except TimeoutError:
            return _Asked(reason=f"the cloud did not answer within {timeout_s:.0f}s", counts=counts)
        except InferenceUnavailable as exc:
            return _Asked(reason=f"the cloud is unavailable: {exc}", counts=counts)
        except InferenceError as exc:
            return _Asked(reason=f"the cloud failed: {exc}", counts=counts)
        finally:
            self._cloud_inflight -= 1
        restored = Proposal.model_validate(redactor.restore_obj(answer.value.model_dump(mode="json"), PERSONAL_KINDS))
        proposal, grounding = ground_proposal(restored, inp)
        problem = check_proposal(proposal, inp)
        if problem is None:
            refs = redactor.placeholders_in([a.arguments for a in proposal.actions], {SECRET})
            if refs:
                problem = f"its plan's arguments use {len(refs)} redacted secret(s), which are never tool arguments"
        if problem is not None:
            if rejected is not None:
                rejected.extend(dropped_actions(proposal, inp))
            return _Asked(reason=f"the cloud's proposal is unusable: {problem}", model=proposal, counts=counts)
        note = _join(
            f"escalated to the cloud: {why}" if why is not None else "CLOUD_FIRST: asked the cloud first",
            f"redacted before sending: {describe_counts(counts)}",
            grounding,
        )
        log.info("propose %s: the cloud answered (%s)", inp.incident_id, describe_counts(counts))
        return _Asked(
            result=ProposeResult(
                proposal=proposal,
                source="cloud",
                note=note,
                model=str(getattr(answer, "model", "")),
                redactions=counts,
            ),
            counts=counts,
        )
