"""The client side of `agentic agents route`: one short workflow on the platform's worker."""

from __future__ import annotations

import uuid

from temporalio.client import WorkflowFailureError

from agentic_core.agents import Route, RouteInput
from workers.errors import AgenticError
from workers.settings import Settings
from workers.temporal import platform_client
from workflows.route_probe import RouteProbeWorkflow


async def route(settings: Settings, text: str) -> Route:
    """Which agent the platform's router picks for `text`, with its score and method."""
    if not text.strip():
        raise AgenticError("nothing to route: the request is empty")
    client, queue = await platform_client(settings)
    try:
        return await client.execute_workflow(
            RouteProbeWorkflow.run,
            RouteInput(text=text),
            id=f"route-{uuid.uuid4()}",
            task_queue=queue,
        )
    except WorkflowFailureError as exc:
        cause: BaseException | None = exc.cause
        while getattr(cause, "cause", None) is not None:
            cause = getattr(cause, "cause", None)
        raise AgenticError(f"the platform could not route it: {cause}") from exc
