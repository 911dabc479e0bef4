"""No workflow module, and no `agentic_core` module (the pure models and policy the workflows
call), reads the clock, randomness, the environment or files directly.

The worker's passthrough sandbox does not refuse `datetime.now()` or `random.random()` in a
workflow module or in what it calls (workers/sandbox.py); the strict sandbox of the workflow
tests does, on the paths they take. This check covers every path: a call below in `workflows/`
or `agentic_core/` is a defect (in a workflow: `workflow.now()`, `workflow.random()`,
`workflow.uuid4()`, or an activity; in `agentic_core`: the time or value as an argument).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
CORE = REPO / "agentic_core"

# module (or class) name -> attributes that must not be called from workflow code
FORBIDDEN: dict[str, set[str]] = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "sleep"},
    "random": {"random", "randint", "choice", "choices", "shuffle", "uniform", "sample", "getrandbits", "seed"},
    "uuid": {"uuid1", "uuid4"},
    "os": {"getenv", "urandom", "listdir", "remove", "system"},
    "secrets": {"token_hex", "token_bytes", "token_urlsafe", "choice", "randbelow"},
}
FORBIDDEN_NAMES = {"open", "input", "getenv"}
FORBIDDEN_READS = {("os", "environ")}


def offences(source: str, filename: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Attribute):
                owner = fn.value
                name = ""
                if isinstance(owner, ast.Name):
                    name = owner.id
                elif isinstance(owner, ast.Attribute):
                    name = owner.attr
                if fn.attr in FORBIDDEN.get(name, set()):
                    out.append(f"{filename}:{node.lineno}: {name}.{fn.attr}()")
            elif isinstance(fn, ast.Name) and fn.id in FORBIDDEN_NAMES:
                out.append(f"{filename}:{node.lineno}: {fn.id}()")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in FORBIDDEN_READS
        ):
            out.append(f"{filename}:{node.lineno}: {node.value.id}.{node.attr}")
    return out


@pytest.mark.parametrize("folder", [WORKFLOWS, CORE], ids=["workflows", "agentic_core"])
def test_no_module_calls_the_clock_randomness_or_io(folder: Path) -> None:
    files = sorted(folder.rglob("*.py"))
    assert len(files) > 5
    found = [o for f in files for o in offences(f.read_text(), str(f.relative_to(REPO)))]
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        "x = datetime.now(UTC)",
        "x = datetime.datetime.utcnow()",
        "x = time.monotonic()",
        "x = random.random()",
        "x = uuid.uuid4()",
        "x = os.environ['HOME']",
        "x = open('f').read()",
    ],
)
def test_the_check_has_teeth(line: str) -> None:
    assert offences(line, "probe.py"), line


def test_the_deterministic_apis_pass() -> None:
    assert offences("x = workflow.now()\ny = workflow.random().random()\nz = workflow.uuid4()", "ok.py") == []
