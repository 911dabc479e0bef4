"""A tool call's arguments checked against the tool's input schema, and what is wrong said in
words: the guard's and `tools.execute`'s refusals are read by an operator (and by the model
that proposed the call), so each says what the argument must be, what it got, and what the
argument is for, instead of jsonschema's wording ("[1] is not of type 'null'").
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.exceptions import best_match

from agentic_core.incident import ToolSpec

__all__ = ["argument_problems"]


def argument_problems(spec: ToolSpec, arguments: dict[str, Any]) -> list[str]:
    """What is wrong with `arguments` for the tool `spec`, in words an operator understands:
    unrendered `{{ templates }}` and each error under the tool's input schema (none: valid)."""
    problems: list[str] = []
    schema = spec.input_schema or {"type": "object"}
    properties = schema.get("properties", {}) if isinstance(schema.get("properties"), dict) else {}
    for name, value in arguments.items():
        if isinstance(value, str) and "{{" in value:
            problems.append(
                f"argument {name!r} still holds a template ({value!r}): the runbook was not rendered for this alert"
            )
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    errors = sorted(validator_cls(schema).iter_errors(arguments), key=lambda e: [str(p) for p in e.absolute_path])
    for err in errors:
        text = _explain_schema_error(spec.name, err, properties, schema)
        if text not in problems:  # e.g. an enum and a type error of one argument say the same
            problems.append(text)
    return problems


# --- schema errors in words ---------------------------------------------------------------------
# jsonschema's messages speak JSON Schema ("[1] is not of type 'null'", for a list argument that
# may be left out: the last branch of its `anyOf` tried). A refusal is read by an operator, so
# it says what the argument must be, what it got, and what the argument is for.

_KIND_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping of names to values",
    "null": "null",
}
_KIND_PLURALS = {
    "string": "strings",
    "integer": "whole numbers",
    "number": "numbers",
    "boolean": "true/false values",
    "array": "lists",
    "object": "mappings",
}


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    """A `$ref` to the schema's own `$defs`/`definitions`, resolved (once; anything else as is)."""
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        name = node["$ref"].rsplit("/", 1)[-1]
        defs = root.get("$defs") or root.get("definitions") or {}
        return defs.get(name, node)
    return node


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null" and len(node.keys() - {"title", "description"}) == 1


def _bounds(node: dict[str, Any]) -> str:
    lo, hi = node.get("minimum"), node.get("maximum")
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" of at least {lo}"
    if hi is not None:
        return f" of at most {hi}"
    return ""


def _expected(node: Any, root: dict[str, Any], depth: int = 0) -> str:
    """What a schema node accepts, in words: "a whole number from 5 to 300", "a list of strings",
    "one of "a", "b"", "a string or null"."""
    node = _resolve(node, root)
    if not isinstance(node, dict) or depth > 4:
        return "a value"
    if "enum" in node and isinstance(node["enum"], list):
        return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            return " or ".join(_expected(n, root, depth + 1) for n in node[key])
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(_expected({**node, "type": k}, root, depth + 1) for k in kind)
    if kind in ("integer", "number"):
        return _KIND_WORDS[kind] + _bounds(node)
    if kind == "array":
        items = _resolve(node.get("items"), root)
        if isinstance(items, dict) and "enum" in items:
            return f"a list of values, each {_expected(items, root, depth + 1)}"
        if isinstance(items, dict) and items.get("type") in _KIND_PLURALS:
            return f"a list of {_KIND_PLURALS[items['type']]}"
        return "a list"
    return _KIND_WORDS.get(kind, "a value") if isinstance(kind, str) else "a value"


def _got(value: Any) -> str:
    """The value an argument had, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:59] + "…"
        return f"the string {text!r}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _where(path: list[Any]) -> str:
    """`argument 'nodes'`, `item 2 of argument 'nodes'`, `argument 'a.b[0]'`."""
    if not path:
        return "the arguments"
    first, rest = str(path[0]), path[1:]
    if len(rest) == 1 and isinstance(rest[0], int):
        return f"item {rest[0] + 1} of argument {first!r}"
    tail = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)
    return f"argument {first + tail!r}"


def _explain_schema_error(
    tool: str, err: SchemaError, properties: dict[str, Any], root: dict[str, Any] | None = None
) -> str:
    """One schema error of a tool's arguments, in words an operator understands."""
    root = root if root is not None else {"properties": properties}
    path = list(err.absolute_path)
    if not path and err.validator == "required" and isinstance(err.instance, dict):
        missing = [r for r in err.validator_value if r not in err.instance]
        return f"argument {missing[0]!r} is required" if missing else err.message
    if not path and err.validator == "additionalProperties" and isinstance(err.instance, dict):
        extra = sorted(k for k in err.instance if k not in properties)
        params = ", ".join(properties) or "none"
        return f"argument {', '.join(repr(e) for e in extra)} is not a parameter of {tool} (parameters: {params})"

    where = _where(path)
    prop = properties.get(path[0]) if path and isinstance(path[0], str) else None
    desc = prop.get("description") if isinstance(prop, dict) else None
    about = f" ({path[0]}: {desc})" if isinstance(desc, str) and desc else ""
    # Left out, the argument takes its default; null is the same for an optional one.
    optional = len(path) == 1 and path[0] not in set(root.get("required") or [])

    if err.validator in ("anyOf", "oneOf") and isinstance(err.validator_value, list):
        branches = [_resolve(b, root) for b in err.validator_value]
        by_branch: dict[int, list[SchemaError]] = {}
        for sub in err.context or []:
            if sub.relative_schema_path and isinstance(sub.relative_schema_path[0], int):
                by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
        candidates = [i for i, b in enumerate(branches) if not _is_null(b)]
        # A branch of the value's own type (e.g. a list with a bad item): what is wrong inside it.
        fitting = [
            i
            for i in candidates
            if by_branch.get(i) and not any(e.validator == "type" and not e.relative_path for e in by_branch[i])
        ]
        if fitting:
            return _explain_schema_error(tool, best_match(by_branch[fitting[0]]), properties, root)
        expected = " or ".join(_expected(branches[i], root) for i in candidates) or "null"
        if len(candidates) < len(branches):  # null is allowed
            expected += " or be left out" if optional else " or null"
        return f"{where} must be {expected}; got {_got(err.instance)}{about}"
    if err.validator == "type":
        kinds = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        expected = _expected({**err.schema, "type": [k for k in kinds if k != "null"] or ["null"]}, root)
        if "null" in kinds and len(kinds) > 1:
            expected += " or be left out" if optional else " or null"
        return f"{where} must be {expected}; got {_got(err.instance)}{about}"
    if err.validator in ("enum", "const"):
        return f"{where} must be {_expected(err.schema, root)}; got {_got(err.instance)}{about}"
    if err.validator == "pattern":
        return f"{where}: {err.message}{about}"  # the pattern itself says little: the description helps
    detail = best_match(err.context) if err.context else err
    return f"{where}: {detail.message}" if path else detail.message
