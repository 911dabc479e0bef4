"""`agentic docs search`: each hit shows the words of its section that answer the query."""

from workers.cli.docs import excerpt

SECTION = """## PostgreSQL ledger

The ledger holds incidents, decisions and runbook records.

| variable | type | default | meaning |
|---|---|---|---|
| `AGENTIC_POSTGRES_PORT` | port | `5433` | embedded PostgreSQL port |
| `AGENTIC_POSTGRES_DSN` | secret DSN | empty (embedded) | an external PostgreSQL's DSN |
"""


def test_a_table_row_shows_as_its_cells_from_the_row_that_answers() -> None:
    shown = excerpt(SECTION, "the DSN of an external PostgreSQL")
    assert shown.startswith("… `AGENTIC_POSTGRES_DSN` · secret DSN · empty (embedded)"), shown
    assert "|" not in shown and "---" not in shown


def test_without_a_shared_word_it_starts_at_the_top_and_is_cut_to_width() -> None:
    shown = excerpt(SECTION, "zebra", width=40)
    assert shown.startswith("PostgreSQL ledger The ledger holds") and shown.endswith("…") and len(shown) == 41, shown


def test_prose_starts_at_its_paragraph_not_at_a_wrapped_line() -> None:
    section = (
        "## Checking it\n\n"
        "`agentic status` with the external settings checks every external part's health (Temporal\n"
        "serving, PostgreSQL reachable and its schema version, the planner pool answering).\n\n"
        "- a list item about workers\n"
        "  that wraps\n"
    )
    shown = excerpt(section, "is PostgreSQL reachable with its schema")
    assert shown.startswith("… `agentic status` with the external settings"), shown
    assert excerpt(section, "workers that wrap").startswith("… - a list item about workers that wraps"), section
