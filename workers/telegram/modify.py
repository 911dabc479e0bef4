"""✏️ Modify as a reply: `name=value` assignments (`parse_assignments`) applied to the plan's
arguments (`apply_arguments`), and a tool call shown as one line (`call_text`)."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from agentic_core.models import ToolCall


def parse_assignments(text: str) -> dict[str, Any]:
    """`memory=2Gi replicas=3 name="a b"` (spaces or commas between) → arguments. Values are
    JSON when they parse as JSON (numbers, booleans, quoted strings), else text."""
    try:
        tokens = shlex.split(text.replace(",", " "))
    except ValueError as exc:
        raise ValueError(f"cannot read the arguments: {exc}") from exc
    out: dict[str, Any] = {}
    for tok in tokens:
        name, sep, raw = tok.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            raise ValueError(f"cannot read {tok!r}: write name=value, e.g. memory=2Gi")
        try:
            out[name] = json.loads(raw)
        except ValueError:
            out[name] = raw
    if not out:
        raise ValueError("no arguments: write name=value, e.g. memory=2Gi")
    return out


def apply_arguments(plan: list[ToolCall], args: dict[str, Any]) -> list[ToolCall]:
    """Override arguments the plan already has; an argument no action takes is an error."""
    unknown = [k for k in args if not any(k in c.arguments for c in plan)]
    if unknown:
        have = sorted({k for c in plan for k in c.arguments})
        raise ValueError(f"no action of the plan takes {', '.join(unknown)} (arguments: {', '.join(have) or 'none'})")
    return [
        ToolCall(tool=c.tool, arguments={**c.arguments, **{k: v for k, v in args.items() if k in c.arguments}})
        for c in plan
    ]


def call_text(c: ToolCall) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(c.arguments.items()))
    return f"{c.tool}({args})"
