"""The `agentic` root app: every group mounted under its name, the stack's own commands
(`up`, `down`, `status`), and `main`, the console script.

Every command is an edge: it translates what the operator asks into Temporal starts, queries
and updates (or runs the embedded stack); `runbooks show|stats`, `telegram setup|log` and
`guardrails list` read the ledger directly (docs/architecture.md). All connect with
`workers.stack.env.platform_settings`.
Errors print one line, `error: <what is wrong and what to do>`, and exit 2; a failed health
check exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.table import Table

from workers.cli import (
    agents,
    alert,
    backup,
    decide,
    docs,
    guardrails,
    incidents,
    keys,
    report,
    review,
    rollout,
    runbooks,
    schedules,
    telegram,
)
from workers.cli.options import DataDir, JsonOut, console, err_console, print_table
from workers.cli.options import cli_settings as _settings
from workers.errors import AgenticError
from workers.settings import Settings

app = typer.Typer(help="agentic-platform: an operations agent that earns autonomy.", no_args_is_help=True)
app.add_typer(decide.app)  # approve, acknowledge, ignore, modify
app.add_typer(runbooks.app, name="runbooks")
app.add_typer(docs.app, name="docs")
app.add_typer(alert.app, name="alert")
app.add_typer(incidents.app, name="incidents")
app.add_typer(rollout.app, name="rollout")
app.add_typer(telegram.app, name="telegram")
app.add_typer(schedules.app, name="schedules")
app.add_typer(report.app, name="report")
app.add_typer(review.app, name="review")
app.add_typer(guardrails.app, name="guardrails")
app.add_typer(agents.app, name="agents")
app.add_typer(keys.app, name="keys")
app.add_typer(backup.app, name="backup")  # create, list, restore (docs/disaster-recovery.md)
app.add_typer(backup.knowledge_app, name="knowledge")  # rebuild (docs/disaster-recovery.md)


# --------------------------------------------------------------------------- stack


def console_line(gateway_url: str, width: int) -> str:
    """Where the web console is and how to sign in: one line, or two when one would fold the
    command in the middle."""
    url = f"{gateway_url.removesuffix('/v1')}/console/"
    line = f"console: {url} (sign in with a key: `agentic keys create NAME`)"
    return line if len(line) <= width else f"console: {url}\n  sign in with a key: `agentic keys create NAME`"


def _print_table(settings: Settings) -> None:
    from workers.stack.state import read_state

    st = read_state(settings.data_path)
    if st is None:
        return
    table = Table(title="agentic-platform: embedded stack", title_justify="left")
    for col in ("part", "mode", "where", "pid", "role"):
        table.add_column(col)
    for p in st.parts.values():
        table.add_row(p.name, p.mode, p.url, str(p.pid or ""), p.role)
    # an address folds onto the next line in a narrow terminal, never "…"; collapsed, a part that
    # is off says why, not "where"
    why = [{"where": "why"} if p.mode == "disabled" else {} for p in st.parts.values()]
    print_table(table, "part", labels=why)
    console.print(f"data dir: {st.data_dir}    logs: {Path(st.data_dir) / 'logs'}")
    if st.ui_url:
        console.print(f"Temporal Web UI: {st.ui_url}")
    gateway = st.parts.get("gateway")
    if gateway is not None and gateway.mode == "embedded":
        console.print(console_line(gateway.url, console.width), highlight=False)
    console.print("stop with Ctrl-C or `agentic down`; check with `agentic status`")


@app.command()
def up(
    data_dir: DataDir = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="start in the background and return")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for all-healthy with --detach")] = 300.0,
) -> None:
    """Start the embedded stack (Temporal, PostgreSQL, llama.cpp, the worker) and supervise it."""
    settings = _settings(data_dir)
    if detach:
        _up_detached(settings, timeout)
        return
    from workers.stack.supervisor import Supervisor

    console.print(f"starting agentic-platform in {settings.data_path} …")
    sup = Supervisor(settings, out=lambda line: console.print(line, highlight=False))
    t0 = time.monotonic()

    def ready(_state: object) -> None:
        console.print(f"all parts healthy in {time.monotonic() - t0:.1f}s")
        _print_table(settings)

    asyncio.run(sup.run(on_ready=ready))


def _up_detached(settings: Settings, timeout: float) -> None:
    from workers.stack.env import PYTHON_M, with_code_path
    from workers.stack.state import read_state

    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    (data / "logs").mkdir(exist_ok=True)
    log = data / "logs" / "supervisor.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*PYTHON_M, "workers.cli", "up", "--data-dir", str(data)],
            env=with_code_path(dict(os.environ)),  # this code, wherever the supervisor's cwd is
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    t0 = time.monotonic()
    with console.status("starting the stack…"):
        while time.monotonic() - t0 < timeout:
            code = proc.poll()
            st = None
            with contextlib.suppress(AgenticError):
                st = read_state(data)
            if st is not None and st.supervisor_pid == proc.pid and st.ready:
                break
            if code is not None:
                lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("error:")]
                raise AgenticError(
                    lines[-1].removeprefix("error: ") if lines else f"the stack exited (code {code}); log: {log}"
                )
            time.sleep(0.3)
        else:
            raise AgenticError(f"the stack did not become healthy within {timeout:.0f}s; log: {log}")
    console.print(f"all parts healthy in {time.monotonic() - t0:.1f}s (supervisor pid {proc.pid}, log {log})")
    _print_table(settings)


@app.command()
def down(data_dir: DataDir = None) -> None:
    """Stop the embedded stack that runs on the data dir."""
    from workers.stack.status import stop_stack

    settings = _settings(data_dir)
    if stop_stack(settings, out=console.print):
        console.print(f"stopped the stack on {settings.data_path}")
    else:
        console.print(f"no stack is running on {settings.data_path}")


@app.command()
def status(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """Report each part's health (exit 1 when a part is unhealthy or nothing runs)."""
    from workers.stack.status import stack_health
    from workers.stack.stuck_actions import stuck_actions

    settings = _settings(data_dir)
    st, parts = asyncio.run(stack_health(settings))
    healthy = all(p.healthy is not False for p in parts)
    ledger_up = all(p.healthy is not False for p in parts if p.name == "postgres")
    # #17: action rows left running, if any (said, not a health check)
    stuck = asyncio.run(stuck_actions(settings)) if ledger_up else None
    if as_json:
        doc = {
            "running": st is not None,
            "healthy": healthy,
            "data_dir": str(settings.data_path),
            "parts": [p.model_dump() for p in parts],
            "stuck_actions": stuck.model_dump() if stuck is not None else None,
        }
        print(json.dumps(doc, indent=2))
    elif st is None and not any(p.healthy for p in parts) and all(p.mode != "external" for p in parts):
        # the embedded stack is not running and nothing outside is configured: one line, not a
        # table of "not running"
        console.print(
            f"nothing runs on {settings.data_path}: start the platform with `agentic up`"
            " (`--detach` for the background) or `make run`",
            highlight=False,
        )
    else:
        if st is None:
            console.print(f"no stack supervisor runs on {settings.data_path}")
        table = Table(title=f"agentic-platform status ({settings.data_path})", title_justify="left")
        for col in ("part", "mode", "health", "restarts", "detail", "where"):
            table.add_column(col)
        for p in parts:
            marks = {True: "[green]healthy[/]", False: "[red]unhealthy[/]", None: "[dim]off[/]"}  # None: disabled
            mark = marks[p.healthy]
            if p.down:
                mark = "[bold red]down[/]"
            table.add_row(p.name, p.mode, mark, str(p.restarts) if p.restarts else "", p.detail, p.url)
        print_table(table, "part")
        endpoints = [(p.name, url) for p in parts if p.healthy is not None for url in p.metrics.split()]
        if endpoints:  # docs/observability.md
            console.print("metrics: " + ", ".join(f"{name} {url}" for name, url in endpoints), soft_wrap=True)
        if stuck is not None and stuck.count:
            console.print(stuck.line(), highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(0 if healthy else 1)


# --------------------------------------------------------------------------- alerts and incidents


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one clear line on error, and an explicit exit (sdk-python#300)."""
    code = 0
    try:
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int):
            code = rv
    except AgenticError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        code = exc.exit_code
    except (typer.Exit, click.exceptions.Exit) as exc:
        code = exc.exit_code
    except (typer.TyperException, click.ClickException) as exc:
        # a usage error (a missing argument, an unknown command or option): Click's own message with
        # the usage line, exit 2. Typer 0.29 raises its vendored Click's exceptions, which are not
        # `click.ClickException`: they were reported as "unexpected" bugs, with exit 1.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        code = getattr(exc, "exit_code", 2)
    except (typer.Abort, click.exceptions.Abort, KeyboardInterrupt):
        code = 130
    except Exception as exc:  # a bug: still one line, with the details on demand
        if os.environ.get("AGENTIC_DEBUG"):
            import traceback

            traceback.print_exc()
        err_console.print(
            f"error: unexpected {type(exc).__name__}: {exc} (set AGENTIC_DEBUG=1 for the traceback)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
