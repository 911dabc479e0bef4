"""`print_table`: in a narrow terminal nothing is cut short, and what the next command takes (an
id, a backup's name) stays whole on one line."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from workers.cli import options


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(options, "console", Console(file=out, width=60, color_system=None))
    return out


def test_the_named_column_is_whole_and_nothing_is_cut_with_an_ellipsis(narrow: io.StringIO) -> None:
    table = Table(title="1 incident")
    for col in ("id", "status", "alert", "runbook", "started"):
        table.add_column(col)
    ident = "inc-3f0634dbdcc84e877801"
    table.add_row(ident, "awaiting_approval", "KubePodCrashLooping", "kubernetes/KubePodCrashLooping", "2026-12-07")
    table.add_row("inc-2", "open", "", "", "2026-12-08")
    options.print_table(table, "id")
    text = narrow.getvalue()
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 60, text
    assert "…" not in text, text
    assert any(ident in ln for ln in lines), text
    # five columns cannot each have their longest word in 60: the rest of a row a line each, words
    # whole, each after its header; empty cells left out
    for shown in ("status awaiting_approval", "alert KubePodCrashLooping", "started 2026-12-07"):
        assert any(shown in ln for ln in lines), f"{shown!r}:\n{text}"
    # a value wider than the column still folds, every character kept
    details = "".join(ln.split("│")[2].strip() for ln in lines if ln.count("│") == 3)
    assert "runbookkubernetes/KubePodCrashLooping" in details, text
    assert "alert  " not in text and sum("started" in ln for ln in lines) == 2, text


def test_a_table_that_fits_word_by_word_folds_as_before(narrow: io.StringIO) -> None:
    table = Table(title="stages")
    for col in ("stage", "at", "ms", "detail"):
        table.add_column(col)
    table.add_row("recall", "18:56", "55", "kubernetes/KubePodCrashLooping (1.99), node/NodeClockSkew (0.4)")
    options.print_table(table)
    text = narrow.getvalue()
    assert "details" not in text and "kubernetes/KubePodCrashLooping" in text, text  # words whole, columns kept
    assert max(len(ln) for ln in text.splitlines()) <= 60, text


def _backups() -> Table:
    table = Table(title="backups")
    for col in ("name", "created", "state"):
        table.add_column(col)
    table.add_row("backup-20261207T163154Z", "2026-12-07 16:31:54 UTC", "incomplete: manifest.json is missing")
    return table


def test_a_wide_terminal_sees_the_table_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = io.StringIO()
    Console(file=plain, width=200, color_system=None).print(_backups())
    out = io.StringIO()
    monkeypatch.setattr(options, "console", Console(file=out, width=200, color_system=None))
    options.print_table(_backups(), "name")
    assert out.getvalue() == plain.getvalue()


def test_without_names_long_words_fold_instead_of_being_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = io.StringIO()
    Console(file=plain, width=30, color_system=None).print(_backups())
    assert "…" in plain.getvalue()  # what rich does on its own
    out = io.StringIO()
    monkeypatch.setattr(options, "console", Console(file=out, width=30, color_system=None))
    options.print_table(_backups())
    assert "…" not in out.getvalue(), out.getvalue()
    assert max(len(ln) for ln in out.getvalue().splitlines()) <= 30


def test_a_runbook_title_that_repeats_its_id_is_left_blank() -> None:
    from workers.cli.runbooks import shown_title

    assert shown_title("alertmanager/AlertmanagerClusterDown", "AlertmanagerClusterDown") == ""
    assert shown_title("alertmanager/AlertmanagerClusterDown", "Alertmanager Cluster Down") == ""
    assert shown_title("alertmanager/AlertmanagerConfigInconsistent", "Alertmanager ConfigInconsistent") == ""
    assert shown_title("node/NodeClockNotSynchronising", "Node clock skew detected") == "Node clock skew detected"
    said = "Sonarr's download queue is stuck"
    assert shown_title("arr/sonarr-queue-stuck", said) == said
    assert shown_title("learned/inc-1", "inc-1 ") == ""
    assert shown_title("KubePodCrashLooping", "KubePodCrashLooping") == ""


def test_search_hits_whose_titles_are_all_blank_have_no_title_column(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from workers.cli import runbooks

    def shown(hits: list[SimpleNamespace]) -> str:
        out = io.StringIO()
        monkeypatch.setattr(runbooks, "print_table", options.print_table)
        monkeypatch.setattr(options, "console", Console(file=out, width=80, color_system=None))
        runbooks._print_hits(hits, as_json=False)
        return out.getvalue()

    same = [SimpleNamespace(id="kubernetes/KubePodCrashLooping", title="Kube Pod Crash Looping", score=0.9)]
    text = shown(same)
    assert "kubernetes/KubePodCrashLooping" in text and "title" not in text.splitlines()[1], text
    said = SimpleNamespace(id="arr/sonarr-queue-stuck", title="Sonarr's download queue is stuck", score=0.5)
    text = shown([*same, said])
    assert "title" in text.splitlines()[1] and "Sonarr's download queue" in text, text


def test_a_table_that_fits_word_by_word_breaks_no_word(monkeypatch: pytest.MonkeyPatch) -> None:
    # 80 columns hold each column's longest word but not each line: rich alone shares the room
    # out its own way, breaking "complete" and the date though they fit
    table = Table(title="backups")
    for col in ("name", "created", "size", "secrets", "ledger schema", "state"):
        table.add_column(col)
    table.add_row("backup-20261207T185828Z", "2026-12-07 18:58:28 UTC", "11.1 MiB", "omitted", "0014", "complete")
    out = io.StringIO()
    monkeypatch.setattr(options, "console", Console(file=out, width=80, color_system=None))
    options.print_table(table, "name")
    text = out.getvalue()
    assert max(len(ln) for ln in text.splitlines()) <= 80, text
    for word in ("backup-20261207T185828Z", "2026-12-07", "18:58:28", "omitted", "complete", "schema"):
        assert any(word in ln for ln in text.splitlines()), f"{word!r} broken:\n{text}"


def test_markup_is_measured_as_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    # `[red]missing[/]` shows as 7 characters, not 17: the table fits without collapsing
    table = Table(title="schedules")
    for col in ("id", "workflow", "every", "state"):
        table.add_column(col)
    table.add_row("agentic-weekly-digest", "WeeklyDigestWorkflow", "Mon 08:00", "[red]missing[/]")
    out = io.StringIO()
    monkeypatch.setattr(options, "console", Console(file=out, width=72, color_system=None))
    options.print_table(table, "id")
    text = out.getvalue()
    assert "details" not in text and "[red]" not in text and "missing" in text, text


def test_collapsed_rows_can_rename_a_header(monkeypatch: pytest.MonkeyPatch) -> None:
    # `agentic up` in 80 columns: a part that is off says why it is off, not "where" it runs
    table = Table()
    for col in ("part", "mode", "where", "pid", "role"):
        table.add_column(col)
    table.add_row("postgres", "embedded", "postgresql://postgres@127.0.0.1:5433/postgres", "14623", "ledger (pgserver)")
    table.add_row("mcp", "disabled", "no cluster configured: set AGENTIC_KUBECONFIG", "", "MCP infrastructure tools")
    out = io.StringIO()
    monkeypatch.setattr(options, "console", Console(file=out, width=60, color_system=None))
    options.print_table(table, "part", labels=[{}, {"where": "why"}])
    text = out.getvalue()
    assert "where" in text and "why no cluster configured" in text, text
    assert "where no cluster" not in text and "pid 14623" in text, text


def test_incidents_list_in_80_columns_breaks_no_word_whatever_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from workers import incident_client
    from workers.cli import incidents

    def listed(status: str) -> list[str]:
        row = incident_client.IncidentSummary(
            id="inc-3f0634dbdcc84e877801",
            status=status,
            severity="warning",
            category="infrastructure",
            alertname="KubePodCrashLooping",
            runbook="kubernetes/KubePodCrashLooping",
            started_at=datetime(2026, 12, 7, 21, 2, 18, tzinfo=UTC),
        )

        async def rows(settings: object, limit: int) -> list[incident_client.IncidentSummary]:
            return [row]

        out = io.StringIO()
        monkeypatch.setattr(incident_client, "list_incidents", rows)
        monkeypatch.setattr(incidents, "_settings", lambda data_dir: None)
        monkeypatch.setattr(options, "console", Console(file=out, width=80, color_system=None))
        monkeypatch.setattr(incidents, "console", options.console)
        monkeypatch.setattr(incidents, "print_table", options.print_table)
        incidents.incidents_list(limit=50, data_dir=None, as_json=False)
        return out.getvalue().splitlines()

    for status in ("open", "awaiting_approval"):
        lines = listed(status)
        assert max(len(ln) for ln in lines) <= 80, "\n".join(lines)
        for words in (status, "inc-3f0634dbdcc84e877801", "runbook kubernetes/KubePodCrashLooping"):
            assert any(words in ln for ln in lines), f"{words!r} not on one line:\n" + "\n".join(lines)
    assert "┃ status" in "\n".join(listed("open"))  # a short status keeps its column


def test_three_columns_that_cannot_hold_their_words_collapse(monkeypatch: pytest.MonkeyPatch) -> None:
    # `runbooks list` in 80 columns: the longest id kept whole left the titles six characters
    table = Table()
    for col in ("id", "level", "title"):
        table.add_column(col)
    table.add_row("prometheus-operator/PrometheusOperatorRejectedResources-long", "manual", "")
    table.add_row("kubernetes/KubeletPlegDurationHigh", "manual", "Kubelet Pod Lifecycle Event Generator Duration High")
    out = io.StringIO()
    monkeypatch.setattr(options, "console", Console(file=out, width=80, color_system=None))
    options.print_table(table, "id")
    text = out.getvalue()
    for word in ("Lifecycle", "Generator", "Duration", "prometheus-operator/PrometheusOperatorRejectedResources-long"):
        assert word in text, text
    assert "level manual" in text and max(len(ln) for ln in text.splitlines()) <= 80, text


def test_the_console_line_never_folds_the_command_to_sign_in() -> None:
    from workers.cli.main import console_line

    wide = console_line("http://127.0.0.1:8087/v1", 120)
    assert wide == "console: http://127.0.0.1:8087/console/ (sign in with a key: `agentic keys create NAME`)"
    narrow = console_line("http://127.0.0.1:8087/v1", 80).splitlines()
    assert narrow == ["console: http://127.0.0.1:8087/console/", "  sign in with a key: `agentic keys create NAME`"]
    assert all(len(ln) <= 80 for ln in narrow)
