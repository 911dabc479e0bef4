"""One error type for the operator: `AgenticError` (workers/errors.py). The servers' start-up
errors are `AgenticError`s too, printed as one `error: …` line by whoever catches them."""

from __future__ import annotations

import socket

import pytest

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
