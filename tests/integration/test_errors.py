"""One error type for the operator: `AgenticError` (workers/errors.py). The servers' start-up
errors are `AgenticError`s too, printed as one `error: …` line by whoever catches them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import REPO
from workers.errors import AgenticError, StartupError
from workers.process import bind_listener, secret_from_env


def test_a_startup_error_is_an_agentic_error_with_one_prefix_when_printed() -> None:
    err = StartupError("error: port 1 is outside 1..65535")
    assert isinstance(err, AgenticError) and err.exit_code == 2
    assert f"error: {err}" == "error: port 1 is outside 1..65535"
    assert str(StartupError("no prefix here")) == "no prefix here"


def test_the_process_helpers_raise_agentic_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AgenticError) as taken:
            bind_listener("127.0.0.1", port, "AGENTIC_X_PORT")
    assert str(taken.value) == f"port {port} on 127.0.0.1 is already in use (set AGENTIC_X_PORT to another port)"
    monkeypatch.delenv("TEST_UNSET_SECRET", raising=False)
    with pytest.raises(AgenticError, match=r"^--token-env TEST_UNSET_SECRET: the environment variable"):
        secret_from_env("TEST_UNSET_SECRET", "--token-env")


PROBE = (
    "from workers.process import run_service\nasync def serve(settings, stop):\n    pass\nrun_service('probe', serve)\n"
)


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "AGENTIC_INTAKE_PORT",
            "eighty",
            "error: invalid settings: AGENTIC_INTAKE_PORT: Input should be a valid integer",
        ),
        ("AGENTIC_LOG_LEVEL", "loud", "error: AGENTIC_LOG_LEVEL 'loud' is not a log level"),
    ],
)
def test_a_process_with_a_bad_setting_says_which_in_one_line_and_exits_2(
    variable: str, value: str, line: str, tmp_path: Path
) -> None:
    """Every process started by `run_service` (the worker, the bot, the intake)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update({"PYTHONPATH": str(REPO), "AGENTIC_DATA_DIR": str(tmp_path), variable: value})
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), proc.stderr
