"""Where the tests run: the repository and the shared corpora, free ports, and the environment
of an `agentic` stack on a temporary data dir."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPORA = REPO.parent / "shared" / "corpora"
RUNBOOKS_CORPUS = CORPORA / "prometheus-operator-runbooks"

_TAKEN: set[int] = set()  # ports this process handed out: never the same one twice


def _ephemeral_low() -> int | None:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _worker_slice(first: int, last: int) -> tuple[int, int]:
    """The part of [first, last] this test process takes ports from: with pytest-xdist (`make test`
    runs two workers), each worker its own slice, so two workers never pick the same port."""
    try:
        index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
        count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        return first, last
    size = (last - first + 1) // count
    return first + index * size, first + (index + 1) * size - 1


def free_port() -> int:
    """A free TCP port on 127.0.0.1, below the kernel's ephemeral range (`ip_local_port_range`)
    when it can be read: no outgoing connection and no `bind(0)` of another process (the Temporal
    dev server picks its metrics port so) can take it between now and the server's start. Never
    the same port twice in one test process."""
    low = _ephemeral_low()
    if low is not None and low > 2048:
        first, last = _worker_slice(max(1024, low - 12000), low - 1)
        for _ in range(200):
            port = random.randint(first, last)
            if port in _TAKEN:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _TAKEN.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    _TAKEN.add(port)
    return port


def port_fields() -> list[str]:
    """Every port setting (`*_port`): a test stack puts each on a free port, so nothing it starts,
    now or in a part added later, collides with a stack already on the defaults."""
    from workers.settings import Settings

    return sorted(name for name in Settings.model_fields if name.endswith("_port"))


def stack_env(data: Path, *, router_index: bool = False) -> dict[str, str]:
    """The environment of an `agentic` stack on `data` with every embedded part on a free port.

    `router_index`: the worker indexes the router's 1,243 exemplars once it polls (the product's
    default). Off unless a test routes: each worker would spend 7-15 s of a core on it while its
    test runs, and the suite starts a stack a few dozen times on two cores (off, the first
    route indexes them, as `agents.route` does when the index is not there yet). The acceptance
    suite runs with the product's defaults (tests/acceptance/conftest.py `base_env`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update({f"AGENTIC_{name.upper()}": str(free_port()) for name in port_fields()})
    env.update(
        AGENTIC_DATA_DIR=str(data),
        AGENTIC_ROUTER_INDEX_AT_START="true" if router_index else "false",
        COLUMNS="200",
    )
    return env
