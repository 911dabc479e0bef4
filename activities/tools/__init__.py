"""MCP tools as the platform calls them: the tool gateway activities the worker registers
(`gateway`), the check of a call's arguments against the tool's schema, said in words
(`arguments`), and the MCP client the gateway lists and calls the servers' tools with
(`mcp_client`).

Shared between the tool servers (workers/toolservers/), the gateway and the workflows that call
the gateway (no heavy imports here, so a workflow can import these names):

- the activity names `LIST_TOOLS`, `GUARD`, `EXECUTE`, `GIVE_UP`, and the error types the gateway raises:
  `ERR_REFUSED` (non-retryable: the action may not run), `ERR_UNAVAILABLE` (retryable: its
  server cannot be reached), `ERR_CONFLICT` (an idempotency key reused for another action);

- `IDEMPOTENCY_TIMESTAMP_META`: a tool's `_meta` key naming an argument that takes an RFC 3339
  timestamp identifying the call; calls with the same value have no additional effect. The
  gateway fills it with the time the action was first claimed in the ledger, so a retried or
  resumed execution of the same action repeats the same call (e.g. `rollout_restart` writes the
  same `kubectl.kubernetes.io/restartedAt` value, which starts no second rollout).

- `IDEMPOTENCY_KEY_META`: a tool's `_meta` key naming an argument that takes the action's
  idempotency key; a call with a key the tool has already acted on returns what it did then
  instead of acting again. The gateway fills it with the action's ledger key (the plan's own
  value, if any, is replaced), so a retried or resumed execution finds its earlier effect (e.g.
  `commit_edit` finds the branch and commit it made for that key and makes no second commit).
"""

from __future__ import annotations

IDEMPOTENCY_TIMESTAMP_META = "agentic.dev/idempotency-timestamp"
IDEMPOTENCY_KEY_META = "agentic.dev/idempotency-key"

LIST_TOOLS = "tools.list_tools"
GUARD = "tools.guard"
EXECUTE = "tools.execute"
GIVE_UP = "tools.give_up"  # an execute that gave up: its ledger row ends `failed`, never `running`

ERR_REFUSED = "ToolRefused"
ERR_UNAVAILABLE = "ToolServerUnavailable"
ERR_CONFLICT = "ActionConflict"

__all__ = [
    "ERR_CONFLICT",
    "ERR_REFUSED",
    "ERR_UNAVAILABLE",
    "EXECUTE",
    "GIVE_UP",
    "GUARD",
    "IDEMPOTENCY_KEY_META",
    "IDEMPOTENCY_TIMESTAMP_META",
    "LIST_TOOLS",
]
