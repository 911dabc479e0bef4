"""`agentic incidents …`: the incidents, one per alert group (list, show: Temporal's visibility and queries)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from agentic_core.wording import counted
from workers.cli.options import DataDir, JsonOut, console, fits_word_by_word, one_line_width, print_table
from workers.cli.options import cli_settings as _settings

if TYPE_CHECKING:
    from agentic_core.incident import IncidentState
    from workers.incident_client import IncidentSummary

app = typer.Typer(help="Incidents: one per alert group.", no_args_is_help=True)


@app.command("list")
def incidents_list(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Incidents, newest first, with status, severity and category."""
    from workers.incident_client import list_incidents

    rows = asyncio.run(list_incidents(_settings(data_dir), limit))
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table(title=counted(len(rows), "incident"), title_justify="left")
    for col in ("id", "status", "severity", "category", "alert", "runbook", "started"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.id, r.status, r.severity, r.category, r.alertname, r.runbook, _when(r.started_at))
    if one_line_width(table) > console.width:
        # A narrow terminal (80 columns, a phone): the rest of a row in one column, a line each,
        # instead of seven columns each folded into pieces of a word.
        table = _narrow(table.title, rows, status_column=True)
        if not fits_word_by_word(table, "id"):  # a long status (awaiting_approval) beside a long runbook id
            table = _narrow(table.title, rows, status_column=False)
    print_table(table, "id")


def _narrow(title: object, rows: list[IncidentSummary], *, status_column: bool) -> Table:
    """An incident a row: its id, its status (in a column of its own, or the first line of the
    rest) and the rest of it a line each."""
    narrow = Table(title=title, title_justify="left")  # type: ignore[arg-type]
    for col in ("id", "status", "incident") if status_column else ("id", "incident"):
        narrow.add_column(col)
    for r in rows:
        what = [r.alertname or "(no alert name)", " · ".join(x for x in (r.severity, r.category) if x)]
        started = _when(r.started_at)
        what += [f"runbook {r.runbook}" if r.runbook else "", f"started {started}" if started else ""]
        if status_column:
            narrow.add_row(r.id, r.status, "\n".join(x for x in what if x))
        else:
            narrow.add_row(r.id, "\n".join(x for x in [r.status, *what] if x))
    return narrow


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else ""


@app.command("show")
def incidents_show(
    incident_id: Annotated[str, typer.Argument(help="incident id (inc-…)")],
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Status, stages with timestamps, evidence, proposal, decision, actions and outcome."""
    from agentic_core.evidence import evidence_lines, evidence_summary
    from workers.incident_client import incident_state

    st = asyncio.run(incident_state(_settings(data_dir), incident_id))
    if as_json:
        print(st.model_dump_json(indent=2))
        return
    console.print(f"[bold]{st.incident_id}[/]  {st.title}", highlight=False)
    recalled = any(s.name == "recall" and s.finished_at for s in st.stages)
    runbook = st.runbook_id or ("none matched" if recalled else "not looked up yet")
    severity, category = st.severity or "not triaged yet", st.category or "not triaged yet"
    console.print(
        f"status {st.status}   severity {severity}   category {category}   runbook {runbook}", highlight=False
    )
    table = Table(title="stages", title_justify="left")
    for col in ("stage", "started", "finished", "detail"):
        table.add_column(col)
    for stage in st.stages:
        fin = stage.finished_at.strftime("%H:%M:%S.%f")[:-3] if stage.finished_at else "…"
        table.add_row(stage.name, stage.started_at.strftime("%H:%M:%S.%f")[:-3], fin, stage.detail)
    print_table(table)
    if st.evidence:
        console.print(f"evidence ({evidence_summary(st.evidence)}):")
        for line in evidence_lines(st.evidence, 300):
            console.print(line, highlight=False, markup=False)
        for item in sorted(st.evidence, key=lambda e: e.index):
            if item.status == "ok" and item.diff:  # a GitOps change: what the plan commits, as it is
                cut = " (cut: the whole diff is in the ledger)" if item.diff_cut else ""
                console.print(f"diff from evidence {item.index + 1}{cut}:", highlight=False, markup=False)
                console.print(item.diff.rstrip("\n"), highlight=False, markup=False, soft_wrap=True)
    if st.proposal:
        p = st.proposal
        console.print(f"proposal ({st.proposal_source}): {p.summary} — confidence {p.confidence:.2f}, risk {p.risk}")
        console.print(f"  diagnosis: {p.diagnosis}", highlight=False)
    for i, call in enumerate(st.plan):
        console.print(f"  plan[{i}] {call.tool} {json.dumps(call.arguments)}", highlight=False)
    for ref in st.refused:
        console.print(f"  refused[{ref.index}] {ref.call.tool}: {ref.reason}", highlight=False)
    if st.decision:
        d = st.decision
        at = f" at {d.decided_at:%Y-%m-%d %H:%M:%S %Z}".rstrip() if d.decided_at else ""
        console.print(f"decision: {d.choice} by {d.by or '-'}{at}", highlight=False)
    else:
        for line in waiting_lines(st):
            console.print(line, highlight=False, markup=False)
    for a in st.actions:
        console.print(f"  action[{a.index}] {a.tool}: {a.status} {a.error or a.output[:120]}", highlight=False)
    if st.outcome:
        detail = f" ({st.outcome.detail})" if st.outcome.detail else ""
        console.print(f"outcome: {st.outcome.outcome}{detail}", highlight=False)


def waiting_lines(st: IncidentState) -> list[str]:
    """What an incident waiting for a human needs next, as commands (none when it does not wait)."""
    from agentic_core.incident import IncidentStatus

    if st.status != IncidentStatus.AWAITING_APPROVAL:
        return []
    iid = st.incident_id
    if not st.plan:
        first = f"plan: nothing to run; waiting for a human: agentic acknowledge {iid} --by NAME"
    else:
        first = f"waiting for a human: agentic approve {iid} --by NAME"
    return [first, f"  (or agentic ignore {iid}, or agentic modify {iid} --args '…')"]


@app.command("trace")
def incidents_trace(
    incident_id: Annotated[str, typer.Argument(help="incident id (inc-…)")],
    show_all: Annotated[bool, typer.Option("--all", help="every occurrence's trace, not only the newest")] = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """The incident's trace as a waterfall: every span from the intake's POST to the record, from
    the embedded stack's span files (DATA_DIR/traces; docs/observability.md)."""
    from workers.errors import AgenticError
    from workers.trace_view import incident_traces, waterfall

    traces = incident_traces(_settings(data_dir).data_path / "traces", incident_id)
    if not traces:
        raise AgenticError(f"no trace names incident {incident_id} (yet: spans are written within a second)")
    chosen = traces if show_all else traces[-1:]
    if as_json:
        print(json.dumps([{"trace_id": t.trace_id, "spans": t.spans} for t in chosen], indent=2))
        return
    print("   start ms    dur ms")  # plain lines: a waterfall must not wrap at the terminal's width
    for tr in chosen:
        print("\n".join(waterfall(tr)))
