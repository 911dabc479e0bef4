"""An incident's trace from the local span files (`DATA_DIR/traces/*.jsonl`, written by every
process of the embedded stack: activities.telemetry.tracing.JsonlSpanExporter), as the terminal
waterfall `agentic incidents trace ID` prints."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.errors import AgenticError

BAR_WIDTH = 40
INCIDENT_KEYS = ("agentic.incident_id", "temporalWorkflowID")


@dataclass
class Trace:
    trace_id: str
    spans: list[dict[str, Any]]

    @property
    def start_ns(self) -> int:
        return min(int(s["start_ns"]) for s in self.spans)

    @property
    def end_ns(self) -> int:
        return max(int(s["end_ns"] or s["start_ns"]) for s in self.spans)

    def orphans(self) -> list[dict[str, Any]]:
        """Spans whose parent is not in the trace (the root excepted)."""
        ids = {s["span_id"] for s in self.spans}
        return [s for s in self.spans if s["parent_id"] and s["parent_id"] not in ids]


def read_spans(spans_dir: Path) -> list[dict[str, Any]]:
    """Every span in the directory's files (the rotated `.1` ones too); bad lines are skipped."""
    spans: list[dict[str, Any]] = []
    for path in sorted(spans_dir.glob("*.jsonl*")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and "trace_id" in doc and "span_id" in doc:
                spans.append(doc)
    return spans


def incident_traces(spans_dir: Path, incident_id: str) -> list[Trace]:
    """The traces that name `incident_id` (one per occurrence), oldest first."""
    if not spans_dir.is_dir():
        raise AgenticError(
            f"no spans in {spans_dir}: the stack keeps them there when AGENTIC_TRACES_LOCAL is on "
            "(docs/observability.md); with a collector, look the trace up there"
        )
    spans = read_spans(spans_dir)
    named = [s for s in spans if any((s.get("attributes") or {}).get(k) == incident_id for k in INCIDENT_KEYS)]
    # The incident's trace is the one its run started in (the workflow's spans are there); a
    # repeat of the alert is a request of its own, linked from the incident's HandleSignal span.
    runs = {s["trace_id"] for s in named if str(s.get("name", "")).startswith("RunWorkflow:")}
    wanted = runs or {s["trace_id"] for s in named}
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        if s["trace_id"] in wanted:
            by_trace[s["trace_id"]].append(s)
    traces = [Trace(tid, sorted(ss, key=lambda s: int(s["start_ns"]))) for tid, ss in by_trace.items()]
    return sorted(traces, key=lambda t: t.start_ns)


def waterfall(tr: Trace, width: int = BAR_WIDTH) -> list[str]:
    """One line a span, children under their parent in start order: offset and duration in
    milliseconds, a bar on the trace's time line, the span's name and process."""
    ids = {s["span_id"] for s in tr.spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for s in tr.spans:
        parent = s["parent_id"] if s["parent_id"] in ids else None
        children[parent].append(s)
    t0, total = tr.start_ns, max(1, tr.end_ns - tr.start_ns)
    lines = [f"trace {tr.trace_id}  {len(tr.spans)} spans  {(tr.end_ns - tr.start_ns) / 1e6:.1f} ms"]

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: int(s["start_ns"])):
            start, end = int(s["start_ns"]), int(s["end_ns"] or s["start_ns"])
            a = int((start - t0) / total * width)
            b = max(a + 1, int((end - t0) / total * width))
            bar = " " * a + ("█" if end > start else "│") * (min(b, width) - a)
            mark = " !" if s.get("status") == "error" else ""
            lines.append(
                f"{(start - t0) / 1e6:9.1f} {(end - start) / 1e6:9.1f}  {bar:<{width}}  "
                f"{'  ' * depth}{s['name']} [{s.get('service', '')}]{mark}"
            )
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return lines
