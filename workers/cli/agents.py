"""`agentic agents …`: ask an agent (`ask`: routed, run durably, every tool call printed as it
happens), answer the question a run waits on (`approve`, `deny`), look at a run (`show`) or at the
runs in the ledger (`runs`: each as it really ended, `workers.agent_runs`), read a tool result it
stored (`result`), and ask the router alone which agent a request goes to (`route`, through the
worker's `workflows.route_probe.RouteProbeWorkflow`: the CLI loads no model). See docs/agents.md."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agentic_core.agents import AgentProgress, AgentStatus, ToolCallRecord
from agentic_core.wording import counted
from workers.cli.options import DataDir, JsonOut, console, err_console, print_table
from workers.cli.options import cli_settings as _settings
from workers.errors import AgenticError

app = typer.Typer(help="Agents: ask one, answer its questions, look at its runs.", no_args_is_help=True)

By = Annotated[str | None, typer.Option("--by", help="who answers (default: $USER); must be an allowed approver")]
FINAL = {"ok", "error", "refused", "approved", "denied", "limited"}


def _who(by: str | None) -> str:
    return by or os.environ.get("USER") or "cli"


def _args(record: ToolCallRecord) -> str:
    return json.dumps(record.call.arguments, sort_keys=True, ensure_ascii=False)


def _line(r: ToolCallRecord) -> str:
    """One tool call in a line: what was called and what became of it."""
    what = f"{r.call.tool} {_args(r)}"
    if r.status == "ok" and r.result is not None:
        cut = ", the model saw part of it" if r.result.truncated else ""
        return f"{what}: ok ({r.result.size} characters, stored as {r.result.ref}{cut})"
    if r.status == "running":
        return f"{what}: running"
    reason = " ".join(r.reason.split())
    return f"{what}: {r.status}" + (f" — {reason[:300]}" if reason else "")


def _approval_help(p: AgentProgress) -> str:
    return (
        f"waiting for a human: {p.approval_id} asks to run a tool that changes something. Answer with\n"
        f"  agentic agents approve {p.run_id} --by NAME   (runs it once)\n"
        f"  agentic agents deny {p.run_id} --by NAME      (it never runs)\n"
        "or with the buttons on Telegram, or in the Temporal Web UI (workflow "
        f"{p.approval_id}, update `decide`)"
    )


class _Printer:
    """Prints each tool call as it happens and the question when the run starts waiting (to stderr
    with --json, so stdout stays one JSON document)."""

    def __init__(self, as_json: bool) -> None:
        self.out = err_console if as_json else console
        self.seen: dict[tuple[int, str], str] = {}
        self.asked: set[str] = set()

    def __call__(self, now: AgentProgress, before: AgentProgress | None) -> None:
        if before is None or (now.agent and now.agent != before.agent):
            how = f" ({now.route.method.value}, score {now.route.score:.2f})" if now.route else ""
            if now.agent:
                self.out.print(f"agent: {now.agent}{how}   run: {now.run_id}", highlight=False)
        for r in now.tool_calls:
            key = (r.step, r.call.call_id)
            shown = self.seen.get(key)
            if r.status in FINAL and shown != r.status:
                self.out.print(f"  [{r.step}] {_line(r)}", highlight=False, markup=False)
                self.seen[key] = r.status
            elif shown is None and r.status == "running":
                self.seen[key] = "running"
        if now.status == AgentStatus.AWAITING_APPROVAL and now.approval_id and now.approval_id not in self.asked:
            self.asked.add(now.approval_id)
            self.out.print(_approval_help(now), highlight=False, markup=False)


def _print_result(res: AgentProgress) -> None:
    console.print(f"[bold]{res.status.value}[/] after {counted(res.steps, 'model turn')}", highlight=False)
    if res.limit_hit:
        console.print(f"limit: {res.limit_hit}", highlight=False)
    console.print()
    console.print(res.answer or "(no answer)", highlight=False, markup=False, soft_wrap=True)
    if res.tool_calls:
        table = Table(title=counted(len(res.tool_calls), "tool call"), title_justify="left")
        for col in ("step", "tool", "arguments", "status", "result"):
            table.add_column(col)
        for r in res.tool_calls:
            detail = (
                f"{r.result.size} chars, {r.result.ref}"
                if r.status == "ok" and r.result is not None
                else " ".join(r.reason.split())[:200]
            )
            table.add_row(str(r.step), r.call.tool, _args(r), r.status, detail)
        print_table(table)


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="what you want to know or have done ('-': read it from stdin)")],
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent", help="observability, coding or web (default: the router chooses; required until it is available)"
        ),
    ] = None,
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="the request's id: asking again with it reattaches to its run")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="who asks (default: $USER)")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="start the run, print its id and return")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for the answer (0: no limit)")] = 0,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Ask an agent: the router picks it (unless --agent), the run prints each tool call as it
    happens, then the answer and every tool call. A tool that changes something waits for a human
    (`agentic agents approve RUN`)."""
    from workers.agent_client import follow, start

    if text == "-":
        text = sys.stdin.read()
    settings = _settings(data_dir)
    if request_id is not None and not 1 <= len(request_id) <= 128:
        raise AgenticError("--request-id must be 1 to 128 characters")

    async def go() -> AgentProgress | str:
        handle, existed = await start(settings, text, agent=agent, request_id=request_id, requested_by=_who(by))
        out = err_console if as_json else console
        if existed:
            out.print(f"reattached to run {handle.id} (request {request_id})", highlight=False)
        if no_wait:
            return handle.id
        return await follow(handle, _Printer(as_json), timeout_s=timeout or None)

    res = asyncio.run(go())
    if isinstance(res, str):
        print(json.dumps({"run_id": res}) if as_json else res)
        return
    if as_json:
        print(res.model_dump_json(indent=2))
    else:
        _print_result(res)
    if res.status == AgentStatus.FAILED:
        raise typer.Exit(1)


@app.command()
def show(
    run: Annotated[str, typer.Argument(help="the run id (agent-…) or the request id")],
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """A run's progress: status, steps, every tool call, the answer so far, the pending question."""
    from workers.agent_client import show as show_run

    p = asyncio.run(show_run(_settings(data_dir), run))
    if as_json:
        print(p.model_dump_json(indent=2))
        return
    _print_result(p)
    if p.status == AgentStatus.AWAITING_APPROVAL and p.approval_id:
        console.print(_approval_help(p), highlight=False, markup=False)


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="at most this many runs")] = 20,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """The newest runs in the ledger, each as it really ended: a run that ended without closing its
    record (terminated, timed out) is closed on the way, saying how."""
    from workers.agent_client import list_runs

    rows, note = asyncio.run(list_runs(_settings(data_dir), limit=limit))
    if note:
        err_console.print(f"note: {note}", highlight=False, markup=False)
    if as_json:
        print(json.dumps([r.model_dump(mode="json", exclude={"checked_at"}) for r in rows], indent=2))
        return
    if not rows:
        console.print("no agent runs yet", highlight=False)
        return
    table = Table(title=f"agent runs ({len(rows)}, newest first)", title_justify="left")
    for col in ("run", "agent", "status", "started (UTC)", "request", "answer"):
        table.add_column(col)
    for r in rows:
        answer = " ".join(r.answer.split())
        table.add_row(
            r.id,
            r.agent or "-",
            r.status,
            r.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            " ".join(r.request.split())[:80],
            answer if len(answer) <= 200 else answer[:199] + "…",
        )
    print_table(table, "run")


def _decide(run: str, choice: str, by: str | None, data_dir: Path | None) -> None:
    from workers.agent_client import decide

    result, p = asyncio.run(decide(_settings(data_dir), run, choice, _who(by)))  # type: ignore[arg-type]
    verb = "approved: it runs once" if choice == "approved" else "denied: it will not run"
    console.print(f"{verb} (by {result.by}, {p.approval_id} of run {p.run_id})", highlight=False)


@app.command()
def approve(
    run: Annotated[str, typer.Argument(help="the run id (agent-…) or the request id")],
    by: By = None,
    data_dir: DataDir = None,
) -> None:
    """Approve the tool call a run waits on: it runs once, and the agent goes on."""
    _decide(run, "approved", by, data_dir)


@app.command()
def deny(
    run: Annotated[str, typer.Argument(help="the run id (agent-…) or the request id")],
    by: By = None,
    data_dir: DataDir = None,
) -> None:
    """Deny the tool call a run waits on: it never runs; the agent is told and goes on."""
    _decide(run, "ignored", by, data_dir)


@app.command()
def result(
    ref: Annotated[str, typer.Argument(help="a stored result's ref (printed beside each tool call)")],
    offset: Annotated[int, typer.Option("--offset", min=0, help="first character (0-based)")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1_000_000, help="characters to print")] = 100_000,
    data_dir: DataDir = None,
) -> None:
    """Print a tool result an agent run stored (the model may have seen only part of it)."""
    from workers.agent_client import stored_result

    text, size = asyncio.run(stored_result(_settings(data_dir), ref, offset, limit))
    sys.stdout.write(text)
    if not text.endswith("\n"):
        sys.stdout.write("\n")
    end = offset + len(text)
    if end < size or offset:
        err_console.print(f"[characters {offset}..{end} of {size}; more with --offset {end}]", highlight=False)


@app.command("route")
def route(
    text: Annotated[str, typer.Argument(help="the request, as you would ask it")],
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Which agent a request goes to, its score and how it was chosen (embedding or llm)."""
    from workers.routing_client import route as route_request

    if not text.strip():
        raise AgenticError("nothing to route: the request is empty")
    r = asyncio.run(route_request(_settings(data_dir), text))
    out = {"agent": r.agent, "score": round(r.score, 4), "method": str(r.method)}
    if as_json:
        print(json.dumps(out))
        return
    console.print(f"{r.agent}  (score {r.score:.3f}, {r.method})", highlight=False)
    if r.note:
        console.print(f"note: {r.note}", highlight=False)
