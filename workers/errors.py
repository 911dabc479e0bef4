"""The one error type for the operator: a message that says what is wrong and what to do, printed
as one line (`error: <message>`, never a traceback) by whoever catches it: the `agentic` command
(workers/cli/main.py), `workers.process.run_service` (the worker, the bot, the intake) and the
servers' mains (the MCP servers, the llama.cpp server). They exit with its `exit_code`, 2."""

from __future__ import annotations


class AgenticError(Exception):
    """An error with a message meant for the operator, printed as `error: <message>`; exit 2."""

    exit_code = 2


class StartupError(AgenticError):
    """An `AgenticError` raised while a server process starts (a port in use, a secret missing from
    the environment, a bad argument). A message may still begin with "error: " (the servers' raise
    sites wrote the prefix themselves before it was one type): that prefix is dropped, since whoever
    prints an `AgenticError` writes it."""

    def __init__(self, message: str) -> None:
        super().__init__(message.removeprefix("error: "))
