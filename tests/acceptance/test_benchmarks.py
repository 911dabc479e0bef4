"""README, "Benchmarks": one command each, printing the figures.

    .venv/bin/python benchmarks/retrieval_eval.py
    .venv/bin/python benchmarks/vector_search.py
    .venv/bin/python benchmarks/stack_startup.py
    .venv/bin/python benchmarks/alert_burst.py
    .venv/bin/python benchmarks/telegram_roundtrip.py
    .venv/bin/python benchmarks/autonomy_sim.py
    .venv/bin/python benchmarks/redaction.py
    .venv/bin/python benchmarks/investigate.py
    .venv/bin/python benchmarks/routing_eval.py
    .venv/bin/python benchmarks/agent_overhead.py
    .venv/bin/python benchmarks/coding_tools.py
    .venv/bin/python benchmarks/web_tools.py
    .venv/bin/python benchmarks/gateway.py
    .venv/bin/python benchmarks/decision_eval.py
    .venv/bin/python benchmarks/queue_scaling.py
    .venv/bin/python benchmarks/gpu_pools.py
    .venv/bin/python benchmarks/fuzz_edges.py
    .venv/bin/python benchmarks/chaos.py

Run in full they take from seconds to many minutes on the 2-core machine, too long for every CI
run. Those that finish well within a minute run as written; those with options that shrink them
run shrunk (the options are theirs, documented in each script); the others are checked to
start and explain their options (`--help`). `.venv/bin/python` is the venv that runs the tests.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.acceptance.conftest import REPO, readme_argv, run

pytestmark = pytest.mark.slow


def bench_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return env


def test_redaction_as_written() -> None:
    res = run(readme_argv(".venv/bin/python benchmarks/redaction.py"), bench_env(), timeout=300)
    assert res.rc == 0, res
    # README: "redaction before a cloud call: speed, false positives on real alert text"
    assert re.search(r"throughput\s+[\d.]+ MB/s", res.out), res
    assert re.search(r"texts changed\s+0\b", res.out), res
    assert re.search(r"planted values left\s+none", res.out), res


def test_telegram_roundtrip_with_fewer_presses() -> None:
    line = ".venv/bin/python benchmarks/telegram_roundtrip.py"
    res = run([*readme_argv(line), "--presses", "5", "--concurrent", "2"], bench_env(), timeout=300)
    assert res.rc == 0, res
    # README: "button press to the workflow's recorded decision (Bot API emulator), p50/p95"
    assert re.search(r"press -> decision recorded\s+n=5\s+p50\s+[\d.]+ ms\s+p95\s+[\d.]+ ms", res.out), res


def test_autonomy_sim_for_one_week() -> None:
    line = ".venv/bin/python benchmarks/autonomy_sim.py"
    res = run([*readme_argv(line), "--weeks", "1", "--per-week", "10"], bench_env(), timeout=300)
    assert res.rc == 0, res
    # README: "12 simulated weeks of earned autonomy: prompts, automated actions, failures"
    printed = res.out + res.err
    assert re.search(r"week\s+alerts\s+prompts", printed) and "levels at the end" in printed, res


@pytest.mark.parametrize(
    "line",
    [
        ".venv/bin/python benchmarks/retrieval_eval.py",
        ".venv/bin/python benchmarks/vector_search.py",
        ".venv/bin/python benchmarks/stack_startup.py",
        ".venv/bin/python benchmarks/alert_burst.py",
        ".venv/bin/python benchmarks/investigate.py",
        ".venv/bin/python benchmarks/routing_eval.py",
        ".venv/bin/python benchmarks/agent_overhead.py",
        ".venv/bin/python benchmarks/coding_tools.py",
        ".venv/bin/python benchmarks/web_tools.py",
        ".venv/bin/python benchmarks/gateway.py",
        ".venv/bin/python benchmarks/decision_eval.py",
        ".venv/bin/python benchmarks/queue_scaling.py",
        ".venv/bin/python benchmarks/gpu_pools.py",
        ".venv/bin/python benchmarks/fuzz_edges.py",
        ".venv/bin/python benchmarks/chaos.py",
    ],
)
def test_the_long_benchmarks_start_and_explain_their_options(line: str) -> None:
    res = run([*readme_argv(line), "--help"], bench_env(), timeout=120)
    assert res.rc == 0 and res.out.lstrip().startswith("usage:"), res
