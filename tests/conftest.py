"""Shared test fixtures. Every test gets its own temporary directories and free ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"
RUNBOOKS_CORPUS = CORPORA / "prometheus-operator-runbooks"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_env(data: Path) -> dict[str, str]:
    """The environment of an `agentic` stack on `data` with every embedded part on a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(
        AGENTIC_DATA_DIR=str(data),
        AGENTIC_TEMPORAL_PORT=str(free_port()),
        AGENTIC_TEMPORAL_UI_PORT=str(free_port()),
        AGENTIC_POSTGRES_PORT=str(free_port()),
        AGENTIC_LLM_PORT=str(free_port()),
        AGENTIC_INTAKE_PORT=str(free_port()),
        AGENTIC_MCP_INFRA_PORT=str(free_port()),
        AGENTIC_MCP_KNOWLEDGE_PORT=str(free_port()),
        AGENTIC_MCP_HA_PORT=str(free_port()),
        AGENTIC_MCP_ARR_PORT=str(free_port()),
        AGENTIC_BOT_PORT=str(free_port()),
        COLUMNS="200",
    )
    return env


@pytest.fixture
def port() -> int:
    return free_port()
