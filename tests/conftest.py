"""Shared test fixtures. Every test gets its own temporary directories and free ports.

The tests are kept by kind: `unit/` (no server), `workflows/` (workflows on Temporal's test
servers, with fake activities), `integration/` (one real part at a time: PostgreSQL, Temporal,
an MCP server, a process), `e2e/` (the whole stack, marked slow), `acceptance/` (README.md's
commands as written, marked slow); `support/` holds the helpers and fakes they share and
`histories/` the captured workflow histories that must keep replaying.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from tests.support.env import free_port


def _scope(nodeid: str) -> str:
    """Which tests must run in one process, in order: a module's (its module-scoped stack starts
    once), and the whole acceptance suite's (its modules share package-scoped stacks and run in
    name order)."""
    path = nodeid.split("::", 1)[0]
    return "tests/acceptance" if path.startswith("tests/acceptance/") else path


if importlib.util.find_spec("xdist") is not None:
    from xdist.scheduler import LoadScopeScheduling

    class _ByScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling:
        """`make test` runs two pytest-xdist workers (most of the suite waits on servers and
        processes, not on the CPU); each `_scope` goes whole to one worker."""
        return _ByScope(config, log)


@pytest.fixture
def port() -> int:
    return free_port()
