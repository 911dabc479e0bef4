"""MCP tools: the Kubernetes operations the infrastructure server exposes (`k8s`) and the
tool gateway activities the worker registers (`gateway`).

Shared between the server and the gateway (no heavy imports here):

- `IDEMPOTENCY_TIMESTAMP_META`: a tool's `_meta` key naming an argument that takes an RFC 3339
  timestamp identifying the call; calls with the same value have no additional effect. The
  gateway fills it with the time the action was first claimed in the ledger, so a retried or
  resumed execution of the same action repeats the same call (e.g. `rollout_restart` writes the
  same `kubectl.kubernetes.io/restartedAt` value, which starts no second rollout).
"""

from __future__ import annotations

IDEMPOTENCY_TIMESTAMP_META = "agentic.dev/idempotency-timestamp"

__all__ = ["IDEMPOTENCY_TIMESTAMP_META"]
