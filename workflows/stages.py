"""Helpers every workflow of the platform shares: short stages as local activities, and the
innermost message of an activity's or child's failure. Deterministic; no I/O."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.tools import GIVE_UP
    from agentic_core.incident import ActionResult, GiveUpInput


def error_message(exc: BaseException) -> str:
    """The innermost message of an activity or child error."""
    while exc.__cause__ is not None and isinstance(exc, (ActivityError, ChildWorkflowError)):
        exc = exc.__cause__
    message = exc.message if isinstance(exc, FailureError) else str(exc)
    return message or type(exc).__name__


async def short_stage(
    local: bool,
    activity: Any,
    arg: Any,
    *,
    start_to_close_timeout: timedelta,
    retry_policy: RetryPolicy,
    result_type: type | None = None,
) -> Any:
    """A short stage (triage, recall, stage, notify, list_tools, guard) as a LOCAL activity:
    it runs in this worker inside the workflow task, with no task-queue round trip and no
    extra workflow task per stage, so the question reaches people sooner (a burst of
    incidents spends less time in workflow tasks). Retries and timeouts are the same; the
    result is recorded in history as a marker, so a replay never runs it again. `local=False`:
    a regular activity (runs from before the incident's `LOCAL_STAGES_PATCH`)."""
    if local:
        try:
            if isinstance(activity, str):
                return await workflow.execute_local_activity(
                    activity,
                    arg,
                    result_type=result_type,
                    start_to_close_timeout=start_to_close_timeout,
                    schedule_to_close_timeout=start_to_close_timeout * 4,
                    retry_policy=retry_policy,
                )
            return await workflow.execute_local_activity_method(
                activity,
                arg,
                start_to_close_timeout=start_to_close_timeout,
                schedule_to_close_timeout=start_to_close_timeout * 4,
                retry_policy=retry_policy,
            )
        except ActivityError:
            raise
        except FailureError as exc:
            # A local activity's last failure can arrive unwrapped (its ApplicationError or
            # TimeoutError): wrap it, so callers handle both kinds of stage alike.
            if is_cancelled_exception(exc):
                raise
            name = activity if isinstance(activity, str) else getattr(activity, "__name__", "activity")
            raise ActivityError(
                f"local activity {name} failed",
                scheduled_event_id=0,
                started_event_id=0,
                identity="",
                activity_type=name,
                activity_id="",
                retry_state=None,
            ) from exc
    if isinstance(activity, str):
        return await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=start_to_close_timeout,
            retry_policy=retry_policy,
        )
    return await workflow.execute_activity_method(
        activity, arg, start_to_close_timeout=start_to_close_timeout, retry_policy=retry_policy
    )


async def close_given_up(
    inp: GiveUpInput, *, what: str, start_to_close_timeout: timedelta, retry_policy: RetryPolicy
) -> ActionResult | None:
    """`tools.execute` gave up on a call: close its ledger row (`tools.give_up`, on the caller's own
    queue: the tools workers may be what is gone), so it ends `failed`, never `running` (#17). The
    recorded result comes back (another attempt may have finished it meanwhile); None, logged, if
    the ledger cannot be reached. `what`: the run and call, for that log line."""
    try:
        result: ActionResult = await workflow.execute_activity(
            GIVE_UP,
            inp,
            result_type=ActionResult,
            start_to_close_timeout=start_to_close_timeout,
            retry_policy=retry_policy,
        )
    except ActivityError as exc:
        if is_cancelled_exception(exc):
            raise
        workflow.logger.warning("%s not closed in the ledger: %s", what, exc)
        return None
    return result
