"""What the incident activities' tests share with others: a tool call and the tool specs of a small catalogue."""

from __future__ import annotations

from agentic_core.incident import (
    ToolSpec,
)
from agentic_core.models import ToolCall

RESTART = ToolCall(tool="kubernetes.restart_deployment", arguments={"namespace": "shop", "name": "checkout"})


TOOLS = [
    ToolSpec(
        name="kubernetes.restart_deployment",
        description="Rolling restart of a deployment",
        input_schema={
            "type": "object",
            "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}},
            "required": ["namespace", "name"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(name="kubernetes.get_logs", description="Recent logs of a pod"),
]
