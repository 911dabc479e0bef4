"""`agentic up` to all-healthy time, and the resident memory of the whole stack at idle.

    python benchmarks/stack_startup.py [--runs 3] [--idle 20]

Each run starts the real embedded stack (`agentic up --detach`) on a fresh temporary data
dir and free ports, measures the wall time until every part is healthy, waits `--idle`
seconds, sums the resident memory (RSS) of the supervisor and every child process tree,
then stops it. The last run is a warm restart on the same data dir (resume time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from tests.support.env import stack_env

REPO = Path(__file__).resolve().parents[1]


def env_for(data: Path) -> dict[str, str]:
    """Every embedded part on a free port (the tests' stack environment)."""
    return stack_env(data)


def agentic(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )


def stack_rss(data: Path) -> dict[str, float]:
    state = json.loads((data / "stack.json").read_text())
    out: dict[str, float] = {}
    sup = psutil.Process(state["supervisor_pid"])
    out["supervisor"] = sup.memory_info().rss / 2**20
    for name, part in state["parts"].items():
        if not part.get("pid"):
            continue
        try:
            p = psutil.Process(part["pid"])
            procs = [p, *p.children(recursive=True)]
            out[name] = sum(q.memory_info().rss for q in procs) / 2**20
        except psutil.NoSuchProcess:
            out[name] = float("nan")
    return out


def one_run(data: Path, env: dict[str, str], idle: float) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    res = agentic(env, "up", "--detach")
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"agentic up failed: {res.stderr.strip()}")
    time.sleep(idle)
    rss = stack_rss(data)
    agentic(env, "down")
    return elapsed, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="cold starts (each on a fresh data dir)")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds to idle before measuring memory")
    args = ap.parse_args()

    cold: list[float] = []
    rss_all: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="agentic-bench-") as tmp:
        data = Path(tmp) / "run0"
        env = env_for(data)
        for i in range(args.runs):
            data = Path(tmp) / f"run{i}"
            env = env_for(data)
            t, rss = one_run(data, env, args.idle)
            cold.append(t)
            rss_all.append(rss)
            print(f"cold start {i + 1}: {t:.1f}s to all-healthy, idle RSS {sum(rss.values()):.0f} MiB", flush=True)
        warm, rss = one_run(data, env, args.idle)
        print(f"warm restart on the same data dir: {warm:.1f}s", flush=True)

    last = rss_all[-1]
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| `agentic up` to all-healthy, cold (median of {len(cold)}) | {statistics.median(cold):.1f} s |")
    print(f"| `agentic up` to all-healthy, warm restart | {warm:.1f} s |")
    for name, mib in last.items():
        print(f"| idle RSS: {name} | {mib:.0f} MiB |")
    print(f"| idle RSS: whole stack | {sum(last.values()):.0f} MiB |")


if __name__ == "__main__":
    main()
