"""The client side of `agentic keys …`: the gateway's API keys, in the ledger directly (like
`agentic guardrails list`: no workflow holds them). Creating a key applies the ledger's pending
migrations first (the key table may be newer than the running worker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from agentic_core.agents import AgentName
from workers.errors import AgenticError
from workers.settings import Settings

if TYPE_CHECKING:
    from activities.ledger.keys import ApiKey
    from activities.ledger.repository import Ledger

AGENTS = tuple(a.value for a in AgentName)


def check_agents(agents: list[str]) -> list[str]:
    """`--agents`: comma-separated or repeated agent names; each must be an agent."""
    names = sorted({a.strip() for item in agents for a in item.split(",") if a.strip()})
    bad = [a for a in names if a not in AGENTS]
    if bad:
        raise AgenticError(f"no agent named {', '.join(map(repr, bad))}: the agents are {', '.join(AGENTS)}")
    return names


@asynccontextmanager
async def _ledger(settings: Settings) -> AsyncIterator[Ledger]:
    from activities.ledger.db import LedgerError
    from activities.ledger.repository import Ledger
    from workers.stack.env import platform_settings

    try:
        ledger = await Ledger.connect(platform_settings(settings).postgres_target(), min_size=1, max_size=1)
    except LedgerError as exc:
        raise AgenticError(
            f"cannot reach the ledger: {exc} (is `agentic up` running, or AGENTIC_POSTGRES_DSN set?)"
        ) from None
    try:
        yield ledger
    except LedgerError as exc:
        raise AgenticError(f"the ledger refused: {exc}") from None
    finally:
        await ledger.close()


async def create_key(settings: Settings, name: str, agents: list[str], read_only: bool) -> tuple[ApiKey, str]:
    async with _ledger(settings) as ledger:
        try:
            return await ledger.create_api_key(name, agents=check_agents(agents), read_only=read_only)
        except ValueError as exc:
            raise AgenticError(str(exc)) from None


async def list_keys(settings: Settings) -> list[ApiKey]:
    async with _ledger(settings) as ledger:
        return await ledger.list_api_keys()


async def revoke_key(settings: Settings, name: str) -> ApiKey:
    async with _ledger(settings) as ledger:
        key = await ledger.revoke_api_key(name)
    if key is None:
        raise AgenticError(f"no key named {name!r}: see `agentic keys list`")
    return key
