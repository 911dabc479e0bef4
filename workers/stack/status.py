"""`agentic status` and `agentic down`: each part's health as the running stack recorded it
(`stack_health`), and stopping the stack that runs on a data dir (`stop_stack`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from workers.settings import Settings
from workers.stack.env import effective_settings, stack_addresses
from workers.stack.parts import Part, build_parts
from workers.stack.state import PartMode, PartState, StackState, pid_alive, read_state, state_path


class PartHealth(BaseModel):
    name: str
    role: str
    mode: PartMode
    healthy: bool | None  # None: not applicable (disabled)
    detail: str
    url: str = ""
    metrics: str = ""  # Prometheus endpoint(s), space-separated
    pid: int | None = None
    restarts: int = 0
    down: bool = False  # down (RestartPolicy.is_down) and not healthy since


RECHECK_AFTER_S = 1.0  # a part whose check fails is checked once more after this


async def stack_health(settings: Settings) -> tuple[StackState | None, list[PartHealth]]:
    data = settings.data_path
    st = read_state(data)
    running = st is not None and pid_alive(st.supervisor_pid)
    settings = stack_addresses(settings)  # the addresses the running stack was started with
    eff = effective_settings(settings, generate=False)
    parts = build_parts(settings, eff, resolve_binaries=False)

    async def one(p: Part) -> PartHealth:
        ps = st.parts.get(p.name) if st and running else None
        pid = ps.pid if ps else None
        restarts, down = (ps.restarts, ps.down_since is not None) if ps else (0, False)
        if p.mode == "disabled":
            return PartHealth(name=p.name, role=p.role, mode=p.mode, healthy=None, detail=p.url)
        in_stack = p.name != "worker" or settings.temporal_embedded
        if p.mode == "embedded" and in_stack and not (running and pid_alive(pid)):
            detail = restart_detail(ps) or "not running"
            return PartHealth(
                name=p.name,
                role=p.role,
                mode=p.mode,
                healthy=False,
                detail=detail,
                url=p.url,
                restarts=restarts,
                down=down,
            )
        assert p.health is not None
        ok, detail = await p.health()
        if not ok:  # look once more: a probe that timed out on a loaded machine is not a part that is down
            await asyncio.sleep(RECHECK_AFTER_S)
            ok, detail = await p.health()
        if not ok and (restarting := restart_detail(ps)):
            detail = f"{restarting}; {detail}"
        return PartHealth(
            name=p.name,
            role=p.role,
            mode=p.mode,
            healthy=ok,
            detail=detail,
            url=p.url,
            metrics=p.metrics,
            pid=pid,
            restarts=restarts,
            down=down,
        )

    return (st if running else None), list(await asyncio.gather(*(one(p) for p in parts)))


def restart_detail(ps: PartState | None) -> str:
    """What `agentic status` says of a part the supervisor is restarting (empty when it is not)."""
    if ps is None or (ps.down_since is None and ps.next_start_at is None):
        return ""
    head = f"down since {ps.down_since:%H:%M:%S} UTC" if ps.down_since is not None else "restarting"
    out = f"{head}: crashed {ps.crash_streak} time{'s' if ps.crash_streak != 1 else ''} in a row"
    out += f" (last exit code {ps.last_exit}), {ps.restarts} restarts"
    if ps.next_start_at is not None:
        wait = max(0.0, (ps.next_start_at - datetime.now(UTC)).total_seconds())
        out += f", next start in {wait:.0f}s"
    return out


def stop_stack(settings: Settings, timeout: float = 60.0, out: Callable[[str], None] = print) -> bool:
    """Ask the supervisor to stop and wait for it. Returns False when nothing was running."""
    data = settings.data_path
    st = read_state(data)
    if st is None:
        return False
    if pid_alive(st.supervisor_pid):
        os.kill(st.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(st.supervisor_pid):
            time.sleep(0.2)
        if not pid_alive(st.supervisor_pid):
            return True
        out(f"the supervisor (pid {st.supervisor_pid}) did not stop within {timeout:.0f}s: stopping its parts")
    # The supervisor is gone (killed?): stop any part it left behind.
    for p in reversed(list(st.parts.values())):
        if p.pid and pid_alive(p.pid) and _is_ours(p.pid, data):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGINT if p.name == "postgres" else signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(p.pid and pid_alive(p.pid) for p in st.parts.values()):
        time.sleep(0.2)
    for p in st.parts.values():
        if p.pid and pid_alive(p.pid) and _is_ours(p.pid, data):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        state_path(data).unlink()
    return True


def _is_ours(pid: int, data: Path) -> bool:
    """A pid from stack.json may have been reused: only touch processes started in our data dir."""
    try:
        return Path(f"/proc/{pid}/cwd").resolve() == data.resolve()
    except OSError:
        return False
