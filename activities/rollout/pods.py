"""What the rollout's checks read from a pod spec or status: pinned to a node by name, Ready."""

from __future__ import annotations

from typing import Any

HOSTNAME_LABEL = "kubernetes.io/hostname"


def pinned(spec: dict[str, Any]) -> bool:
    if spec.get("nodeName"):
        return True
    if HOSTNAME_LABEL in (spec.get("nodeSelector") or {}):
        return True
    required = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        or {}
    ).get("nodeSelectorTerms") or []
    return any(
        expr.get("key") == HOSTNAME_LABEL
        for term in required
        for expr in (term.get("matchExpressions") or []) + (term.get("matchFields") or [])
    ) or any(expr.get("key") == "metadata.name" for term in required for expr in (term.get("matchFields") or []))


def ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
