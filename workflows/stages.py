"""Helpers every workflow of the platform shares: short stages as local activities, and the
innermost message of an activity's or child's failure. Deterministic; no I/O."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError, FailureError, is_cancelled_exception


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
