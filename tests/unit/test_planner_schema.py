"""The schema the embedded small model generates its plan with: only the tools in its prompt and
their argument names, each with a scalar value; no action when no tool is offered. Every reply it
allows is a valid Proposal."""

from __future__ import annotations

import jsonschema
import pytest

from activities.incident.prompt import CONFIDENCE_STEPS, MAX_PROMPT_TOOLS, proposal_generation_schema
from activities.inference.router import generation_schema
from agentic_core.incident import ToolSpec
from agentic_core.models import Proposal

PODS = ToolSpec(
    name="get_pods",
    description="list pods",
    input_schema={
        "type": "object",
        "properties": {"namespace": {"type": "string"}, "label_selector": {"type": "string"}},
        "required": ["namespace"],
    },
)
RESTART = ToolSpec(
    name="rollout_restart",
    description="restart a deployment",
    input_schema={"type": "object", "properties": {"namespace": {"type": "string"}, "deployment": {"type": "string"}}},
    mutating=True,
)
BASE = {"summary": "A pod keeps crashing.", "diagnosis": "OOMKilled.", "confidence": 0.7}


def narrow(tools: list[ToolSpec]) -> dict:  # type: ignore[type-arg]
    # as the router sends it to the embedded model: with the group's bounds around it
    return generation_schema(proposal_generation_schema(tools), max_string_length=120, max_items=8)


def test_with_no_tool_offered_no_action_can_be_written() -> None:
    schema = narrow([])
    jsonschema.validate(BASE | {"actions": []}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(BASE | {"actions": [{"tool": "get_pods", "arguments": {}}]}, schema)


def test_an_action_names_an_offered_tool_and_its_arguments_once_each_as_scalars() -> None:
    schema = narrow([PODS, RESTART])
    ok = {"tool": "rollout_restart", "arguments": {"namespace": "media", "deployment": "sonarr"}}
    jsonschema.validate(BASE | {"actions": [ok]}, schema)
    Proposal.model_validate(BASE | {"actions": [ok]})  # what the schema allows is a Proposal
    for bad in (
        {"tool": "delete_everything", "arguments": {}},  # not offered
        {"tool": "get_pods", "arguments": {"action_type_name": "x"}},  # a name no tool takes
        {"tool": "get_pods", "arguments": {"deployment": "x"}},  # a name only another tool takes
        {"tool": "get_pods", "arguments": {"namespace": {"nested": "object"}}},  # not a scalar
        {"tool": "get_pods", "arguments": {"namespace": "n" * 121}},  # past the string bound
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(BASE | {"actions": [bad]}, schema)


def test_only_the_tools_in_the_prompt_are_offered() -> None:
    many = [PODS.model_copy(update={"name": f"tool_{i}"}) for i in range(MAX_PROMPT_TOOLS + 5)]
    schema = proposal_generation_schema(many)
    offered = [a["properties"]["tool"]["enum"][0] for a in schema["properties"]["actions"]["items"]["anyOf"]]
    assert offered == [t.name for t in many[:MAX_PROMPT_TOOLS]]


def test_the_confidence_is_one_of_twenty_one_steps_within_its_bounds() -> None:
    schema = narrow([PODS])
    jsonschema.validate(BASE | {"confidence": 0.35}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(BASE | {"confidence": 1.99}, schema)
    assert all(Proposal.model_validate(BASE | {"confidence": c}) for c in CONFIDENCE_STEPS)
