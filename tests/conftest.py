"""Shared test fixtures. Every test gets its own temporary directories and free ports.

The tests are kept by kind: `unit/` (no server), `workflows/` (workflows on Temporal's test
servers, with fake activities), `integration/` (one real part at a time: PostgreSQL, Temporal,
an MCP server, a process), `e2e/` (the whole stack, marked slow), `acceptance/` (README.md's
commands as written, marked slow); `support/` holds the helpers and fakes they share and
`histories/` the captured workflow histories that must keep replaying.
"""

from __future__ import annotations

import pytest

from tests.support.env import free_port


@pytest.fixture
def port() -> int:
    return free_port()
