"""The stack file, DATA_DIR/stack.json: what runs where (the supervisor's pid, each part's mode,
address, pid and restarts). The supervisor writes it; `agentic status`, `agentic down` and every
command and process outside the supervisor read it (`workers.stack.env.platform_settings`)."""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from workers.errors import AgenticError

# embedded: `agentic up` runs it; external: only checked (its address was given); disabled: not
# configured (its url says what to set)
PartMode = Literal["embedded", "external", "disabled"]


class PartState(BaseModel):
    name: str
    role: str
    mode: PartMode
    url: str = ""
    port: int | None = None
    pid: int | None = None
    log: str | None = None
    restarts: int = 0  # restarts since `agentic up`
    crash_streak: int = 0  # crashes in a row (none after a healthy run of supervisor_healthy_reset_s)
    last_exit: int | None = None  # exit code of the last crash (negative: killed by that signal)
    down_since: datetime | None = None  # set while the part is down (RestartPolicy.is_down)
    next_start_at: datetime | None = None  # when the supervisor starts it again, while it waits
    starting: bool = False  # (re)started, the supervisor still waits for it to be healthy


class StackState(BaseModel):
    """The content of stack.json: what `agentic status` and the other commands read."""

    supervisor_pid: int
    ready: bool = False
    error: str | None = None
    started_at: datetime
    data_dir: str
    host: str | None = None  # the interface its embedded parts listen on (None: written by an older version)
    temporal_target: str
    temporal_namespace: str
    task_queue: str
    ui_url: str | None = None
    parts: dict[str, PartState] = Field(default_factory=dict)


def state_path(data: Path) -> Path:
    return data / "stack.json"


def read_state(data: Path) -> StackState | None:
    path = state_path(data)
    if not path.exists():
        return None
    try:
        return StackState.model_validate_json(path.read_text())
    except ValueError as exc:
        raise AgenticError(
            f"{path} is not a valid stack file ({str(exc).splitlines()[0]}): "
            "if no stack is running, delete it and run `agentic up` again"
        ) from exc


def write_state(data: Path, state: StackState) -> None:
    tmp = state_path(data).with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    tmp.replace(state_path(data))


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True
