"""What of README.md is checked without starting anything (so these run in `make test-fast` too):

- every command of README.md's ```sh blocks is one that an acceptance test runs as written
  (so a new README command without an acceptance test fails here), and every variable README
  exports is set by one (or is listed below with the reason it cannot be here);
- `make test` is what CI runs (`.ci/run`), and runs lint, types and every test, slow ones too;
  `make test-fast` skips the slow ones (README, "Development"). `make test` cannot run inside
  the tests it runs, so what it would run is read with `make -n`.
"""

from __future__ import annotations

import ast
import shlex
import subprocess
from pathlib import Path

from tests.acceptance.conftest import README, REPO

HERE = Path(__file__).parent

# Commands that no acceptance test runs as written, and why (each is checked some other way).
NOT_RUN_AS_WRITTEN = {
    "make test": "it runs this suite: test_ci_runs_make_test and test_make_test_runs_lint_types_and_every_test",
    ".venv/bin/python benchmarks/retrieval_eval.py": "a minute or two alone: test_benchmarks checks that it starts",
    ".venv/bin/python benchmarks/vector_search.py": "88 s even at --points 2000: test_benchmarks checks it starts",
    ".venv/bin/python benchmarks/stack_startup.py": "70 s at --runs 1: test_benchmarks checks that it starts",
    ".venv/bin/python benchmarks/alert_burst.py": "70 s at --groups 2: test_benchmarks checks that it starts",
    ".venv/bin/python benchmarks/telegram_roundtrip.py": "about 30 s: test_benchmarks runs it with fewer presses",
    ".venv/bin/python benchmarks/autonomy_sim.py": "minutes: test_benchmarks runs one simulated week",
    ".venv/bin/python benchmarks/investigate.py": "minutes (a stack, 20 incidents): test_benchmarks checks it starts",
    ".venv/bin/python benchmarks/routing_eval.py": "a minute or more: test_benchmarks checks it starts",
    ".venv/bin/python benchmarks/agent_overhead.py": "a minute or more: test_benchmarks checks it starts",
    ".venv/bin/python benchmarks/decision_eval.py": "minutes with the local model: test_benchmarks checks it starts; "
    "tests/integration/test_decision_eval.py runs its triage and recall slice",
    ".venv/bin/python benchmarks/fuzz_edges.py": "minutes (30,000 requests): test_benchmarks checks it starts;"
    " tests/integration/test_fuzz_edges.py is its CI slice",
    ".venv/bin/python benchmarks/chaos.py": "minutes (50 kills): test_benchmarks checks it starts",
}
# Exported variables no acceptance test sets, and why.
NOT_SET = {
    "AGENTIC_QDRANT_URL": "no Qdrant server can be had on these machines (shared/DEPENDENCIES.md)",
    "AGENTIC_QDRANT_API_KEY": "no Qdrant server can be had on these machines (shared/DEPENDENCIES.md)",
}


def _strings_of_the_tests() -> set[str]:
    found: set[str] = set()
    for path in HERE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def test_every_readme_command_is_run_by_an_acceptance_test() -> None:
    strings = _strings_of_the_tests()
    missing = [
        c.line
        for c in README.commands
        if not c.line.startswith("export ") and c.line not in strings and c.line not in NOT_RUN_AS_WRITTEN
    ]
    assert not missing, "README commands that no acceptance test runs as written:\n  " + "\n  ".join(missing)
    stale = [line for line in NOT_RUN_AS_WRITTEN if line not in {c.line for c in README.commands}]
    assert not stale, f"no longer README commands: {stale}"


def test_every_readme_export_is_set_by_an_acceptance_test() -> None:
    text = "\n".join(p.read_text() for p in HERE.glob("*.py"))
    missing = [name for name, _ in README.exports if name not in NOT_SET and f"{name}=" not in text]
    assert not missing, f"README exports that no acceptance test sets: {missing}"


def test_ci_runs_make_test() -> None:
    # README: "the README's commands are the ones CI runs"; `make test` is what `.ci/run` runs.
    README.command("make test")
    lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#")]
    assert commands[-1] == "make test", commands


def _make_dry_run(target: str) -> list[list[str]]:
    res = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = []
    for ln in res.stdout.splitlines():
        try:
            argv = shlex.split(ln, comments=True)
        except ValueError:  # a line of a multi-line shell command (the apt step)
            continue
        if argv:
            out.append(argv)
    return out


def test_make_test_runs_lint_types_and_every_test() -> None:
    # README: "`make test` runs `ruff check`, `ruff format --check`, `mypy` and `pytest` over
    # everything"; "run every test: lint, unit, integration and the slow end-to-end ones".
    ran = [[Path(argv[0]).name, *argv[1:]] for argv in _make_dry_run("test")]
    assert ["ruff", "check", "."] in ran, ran
    assert ["ruff", "format", "--check", "."] in ran, ran
    assert any(a[0] == "mypy" for a in ran), ran
    pytest_runs = [a for a in ran if a[0] == "pytest"]
    assert len(pytest_runs) == 1 and "-m" not in pytest_runs[0], pytest_runs  # nothing deselected


def test_make_test_fast_skips_the_slow_tests() -> None:
    # README: "`make test-fast` skips the slow end-to-end tests".
    pytest_runs = [a for a in _make_dry_run("test-fast") if Path(a[0]).name == "pytest"]
    assert len(pytest_runs) == 1, pytest_runs
    args = pytest_runs[0]
    assert "-m" in args and args[args.index("-m") + 1] == "not slow", args
