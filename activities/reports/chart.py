"""The digest's chart: a matplotlib PNG (Agg, no display) with two panels.

Left: the week's decisions per day, stacked by kind. Right: the share of decisions the
platform took alone (`automatic`) over the last weeks. CPU work: call it from a thread.
Uses the object API (`Figure` + `FigureCanvasAgg`), never `pyplot`, so no global state is
shared between threads.
"""

from __future__ import annotations

import io

from agentic_core.reports import DECISION_KINDS, WeeklyDigest

COLORS = {
    "approved": "#2e7d32",
    "modified": "#f9a825",
    "acknowledged": "#8e24aa",
    "ignored": "#757575",
    "expired": "#c62828",
    "automatic": "#1565c0",
}
SIZE_IN = (11.0, 4.5)
DPI = 100


def render_chart(d: WeeklyDigest) -> bytes:
    """The chart as PNG bytes (1100 x 450 pixels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])

    days = [day.day.strftime("%a %d") for day in d.daily]
    x = list(range(len(days)))
    bottom = [0] * len(days)
    for kind in DECISION_KINDS:
        values = [day.counts.get(kind, 0) for day in d.daily]
        left.bar(x, values, bottom=bottom, color=COLORS[kind], label=kind, width=0.7)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    left.set_xticks(x, days)
    left.set_title(f"Decisions per day, {d.week}")
    left.set_ylabel("decisions")
    left.yaxis.get_major_locator().set_params(integer=True)
    left.set_ylim(0, max([*bottom, 1]) * 1.35)  # room for the legend above the bars
    if not any(bottom):
        left.text(0.5, 0.5, "no decisions this week", ha="center", va="center", transform=left.transAxes)
    left.legend(loc="upper left", fontsize="small", ncols=3, frameon=False)

    weeks = [w.week.split("-", 1)[1] for w in d.trend]
    share = [100 * w.share if w.share is not None else float("nan") for w in d.trend]
    right.plot(range(len(weeks)), share, marker="o", color=COLORS["automatic"])
    for i, w in enumerate(d.trend):
        if w.total:
            right.annotate(
                f"{w.automatic}/{w.total}",
                (i, share[i]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize="x-small",
            )
    right.set_xticks(range(len(weeks)), weeks, fontsize="small")
    right.set_ylim(0, 105)
    right.set_ylabel("% of decisions taken automatically")
    right.set_title("Automation share by week")
    right.grid(axis="y", alpha=0.3)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()
