"""The `agentic` command groups share one shape: the `--data-dir` option and the settings read
(workers/cli/options.py), so a bad setting is the same one line, exit 2, in every group."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.env import REPO


def agentic(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "command",
    [["status"], ["runbooks", "list"], ["telegram", "setup"], ["telegram", "log"], ["schedules", "list"]],
    ids=" ".join,
)
def test_a_bad_setting_is_one_line_and_exit_2_in_every_group(command: list[str], tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(AGENTIC_DATA_DIR=str(tmp_path), AGENTIC_INTAKE_PORT="eighty")
    res = agentic(*command, env=env)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad configuration: intake_port"), res.stderr


@pytest.mark.parametrize("command", [["telegram", "setup"], ["telegram", "log"], ["runbooks", "list"]], ids=" ".join)
def test_every_group_takes_the_same_data_dir_option(command: list[str]) -> None:
    res = agentic(*command, "--help", env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert res.returncode == 0, res.stderr
    [line] = [ln for ln in res.stdout.splitlines() if "--data-dir" in ln]
    assert "<path>" in line and "data dir of the embedded stack" in line, line
