"""README, "The two commands":

    make run     # set up .venv, then start the whole platform on the embedded stack (Ctrl-C stops it)
    make test    # set up .venv, then run every test: lint, unit, integration and the slow end-to-end ones

`make run` runs here in the foreground on its own data dir and free ports (the AGENTIC_*_PORT
variables), prints `all parts healthy in …` and README's table, and stops on Ctrl-C (SIGINT to
its process group, as a terminal sends it). `make test` cannot run inside the tests it runs:
tests/acceptance/test_readme_static.py checks what it runs and that CI (`.ci/run`) runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import README, REPO, Stack, alive, base_env, check_parts_table

pytestmark = pytest.mark.slow


def make_run_argv() -> list[str]:
    """`make run`, as written when this venv is the repository's own `.venv` and set up (as in CI,
    after `make test`). Elsewhere (a worktree sharing another checkout's venv) the Makefile is
    pointed at the venv that runs these tests and told not to redo its set-up (`-o STAMP`): set-up
    installs into that venv, which is not this test's to change."""
    README.command("make run")
    venv = Path(sys.prefix)
    stamp = venv / ".setup-done"
    own = venv.resolve() == (REPO / ".venv").resolve()
    if own and stamp.exists() and stamp.stat().st_mtime >= (REPO / "pyproject.toml").stat().st_mtime:
        return ["make", "run"]
    return ["make", "run", f"VENV={venv}", "-o", str(stamp)]


class Output:
    """The merged stdout/stderr of a process, read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, proc: subprocess.Popen[str], within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if needle in self.text:
                return True
            if proc.poll() is not None:
                self._thread.join(5)
                return needle in self.text
            time.sleep(0.2)
        return False


def test_make_run_starts_the_platform_and_ctrl_c_stops_it(workdir: Path) -> None:
    env = base_env(workdir / "make-run")
    stack = Stack("make-run", env)
    argv = make_run_argv()
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the "terminal" the SIGINT goes to
    )
    out = Output(proc)
    try:
        # The table ends with the hint line; wait for it (or for make to give up).
        ready = out.wait_for("stop with Ctrl-C", proc, 300)
        assert ready, f"`{' '.join(argv)}` never printed its table:\n{out.text[-4000:]}\n{stack.logs()}"
        # README: "`make run` is `agentic up`: it starts, each as a supervised child process with its
        # health checked, ... then it ingests `docs/` into the knowledge base (...) and prints what runs where"
        check_parts_table(out.text, env)
        status = stack.status()
        assert status["rc"] == 0 and status["healthy"], status
        state = json.loads((stack.data / "stack.json").read_text())
        pids = [state["supervisor_pid"], *(p["pid"] for p in state["parts"].values() if p["pid"])]

        # README: "(Ctrl-C stops it)"
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`make run` still runs 120 s after Ctrl-C:\n{out.text[-3000:]}")
        time.sleep(0.5)
        assert "stopped." in out.text, out.text[-3000:]
        still = [pid for pid in pids if alive(pid)]
        assert not still, f"parts still running after Ctrl-C: {still}\n{out.text[-3000:]}"
        after = stack.status()
        assert after["rc"] == 1 and after["running"] is False, after
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        stack.agentic("down", timeout=120)
