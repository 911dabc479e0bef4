"""The schema the embedded small model generates its plan with: only the tools in its prompt,
each with its own arguments as scalars (the required ones required); no action when no tool is
offered; the confidence in steps within its bounds. Every reply it allows is a valid Proposal."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from activities.incident.prompt import CONFIDENCE_STEPS, MAX_PROMPT_TOOLS, proposal_generation_schema
from activities.inference.router import generation_schema
from agentic_core.incident import ToolSpec
from agentic_core.models import Proposal
from tests.support.incident_activities import RESTART, TOOLS

BASE = {"summary": "A pod keeps crashing.", "diagnosis": "OOMKilled.", "confidence": 0.7}


def narrow(tools: list[ToolSpec]) -> dict[str, Any]:
    # as the router sends it to the embedded model: with the group's bounds around it
    return generation_schema(proposal_generation_schema(tools), max_string_length=120, max_items=8)


def test_with_no_tool_offered_no_action_can_be_written() -> None:
    schema = narrow([])
    jsonschema.validate(BASE | {"actions": []}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(BASE | {"actions": [RESTART.model_dump()]}, schema)


def test_an_action_names_an_offered_tool_and_its_own_arguments_once_each_as_scalars() -> None:
    schema = narrow(TOOLS)  # restart_deployment (namespace*, name*) and get_logs (no arguments)
    ok = RESTART.model_dump()
    jsonschema.validate(BASE | {"actions": [ok]}, schema)
    Proposal.model_validate(BASE | {"actions": [ok]})  # what the schema allows is a Proposal
    for bad in (
        {"tool": "delete_everything", "arguments": {}},  # not offered
        {"tool": ok["tool"], "arguments": ok["arguments"] | {"action_type_name": "x"}},  # a name no tool takes
        {"tool": "kubernetes.get_logs", "arguments": {"namespace": "shop"}},  # a name only another tool takes
        {"tool": ok["tool"], "arguments": {"namespace": "shop"}},  # a required argument missing
        {"tool": ok["tool"], "arguments": {"namespace": {"nested": "object"}, "name": "checkout"}},  # not a scalar
        {"tool": ok["tool"], "arguments": {"namespace": "n" * 121, "name": "checkout"}},  # past the string bound
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(BASE | {"actions": [bad]}, schema)


def test_only_the_tools_in_the_prompt_are_offered() -> None:
    many = [TOOLS[0].model_copy(update={"name": f"tool_{i}"}) for i in range(MAX_PROMPT_TOOLS + 5)]
    schema = proposal_generation_schema(many)
    offered = [a["properties"]["tool"]["enum"][0] for a in schema["properties"]["actions"]["items"]["anyOf"]]
    assert offered == [t.name for t in many[:MAX_PROMPT_TOOLS]]


def test_the_confidence_is_one_of_twenty_one_steps_within_its_bounds() -> None:
    schema = narrow(TOOLS)
    jsonschema.validate(BASE | {"confidence": 0.35}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(BASE | {"confidence": 1.99}, schema)
    assert all(Proposal.model_validate(BASE | {"confidence": c}) for c in CONFIDENCE_STEPS)
