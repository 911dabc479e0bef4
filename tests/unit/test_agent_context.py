"""The agent's context building (activities/agents/context.py): results cut at max_result_chars
with a note, the oldest tool results dropped first to fit max_context_tokens, then whole turns,
then the request; the chat shape stays valid."""

from __future__ import annotations

import json
from typing import Any

from activities.agents.context import Entry, build_context, estimate, openai_tools

SYSTEM = "You are the observability agent."


def turn(n: int, tool: str = "get_pod_logs") -> Entry:
    return Entry(
        role="assistant", content="", tool_calls=[{"id": f"c{n}", "name": tool, "arguments": json.dumps({"n": n})}]
    )


def result(n: int, text: str, *, size: int | None = None, tool: str = "get_pod_logs") -> Entry:
    return Entry(
        role="tool", content=text, tool_call_id=f"c{n}", tool_name=tool, status="ok", size=size, ref=f"run/{n}/c{n}"
    )


def tool_contents(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "tool"]


def test_a_small_transcript_goes_through_unchanged() -> None:
    entries = [Entry(role="user", content="why is sonarr restarting?"), turn(1), result(1, "OOMKilled")]
    ctx = build_context(SYSTEM, entries, max_tokens=3000, max_result_chars=4000)
    assert [m["role"] for m in ctx.messages] == ["system", "user", "assistant", "tool"]
    assert ctx.messages[2]["tool_calls"][0]["function"] == {"name": "get_pod_logs", "arguments": '{"n": 1}'}
    assert ctx.messages[3] == {"role": "tool", "tool_call_id": "c1", "content": "OOMKilled"}
    assert (ctx.trimmed, ctx.truncated, ctx.over) == (0, 0, False)
    assert ctx.tokens == sum(4 + estimate(m.get("content") or "") for m in ctx.messages) + estimate(
        json.dumps(ctx.messages[2]["tool_calls"])
    )


def test_a_long_result_is_cut_with_a_note_saying_so_and_where_the_rest_is() -> None:
    head = "x" * 4001  # the ledger hands over max_result_chars + 1 of a 5 MB blob
    entries = [Entry(role="user", content="logs?"), turn(1), result(1, head, size=5_000_000)]
    ctx = build_context(SYSTEM, entries, max_tokens=100_000, max_result_chars=4000)
    shown = tool_contents(ctx.messages)[0]
    assert shown.startswith("x" * 4000) and "x" * 4001 not in shown
    assert "truncated: the result has 5000000 characters and only the first 4000 are shown" in shown
    assert "run/1/c1" in shown and "call the tool again asking for less" in shown
    assert ctx.truncated == 1 and ctx.trimmed == 0


def test_the_oldest_tool_results_are_dropped_first_with_a_note() -> None:
    entries = [Entry(role="user", content="what is wrong?")]
    for n in range(1, 5):
        entries += [turn(n), result(n, f"result {n} " + "y" * 2000)]
    ctx = build_context(SYSTEM, entries, max_tokens=900, max_result_chars=4000)
    contents = tool_contents(ctx.messages)
    assert len(contents) == 4  # every call still has its answer: the chat shape stays valid
    assert contents[0].startswith("[dropped to fit the context limit of 900 tokens: the result of get_pod_logs")
    assert "stored as run/1/c1" in contents[0]
    assert contents[1].startswith("[dropped") and contents[2].startswith("[dropped")
    assert contents[3].startswith("result 4 ")  # the newest stays
    assert ctx.trimmed == 3 and ctx.tokens <= 900 and not ctx.over


def test_whole_old_turns_go_when_dropping_results_is_not_enough_and_the_latest_stays() -> None:
    entries = [Entry(role="user", content="what is wrong?")]
    for n in range(1, 40):
        entries += [
            Entry(
                role="assistant", content="thinking " * 30, tool_calls=[{"id": f"c{n}", "name": "t", "arguments": "{}"}]
            ),
            result(n, "short"),
        ]
    ctx = build_context(SYSTEM, entries, max_tokens=600, max_result_chars=4000)
    assert ctx.tokens <= 600 and not ctx.over
    roles = [m["role"] for m in ctx.messages]
    assert roles[:3] == ["system", "user", "system"]
    assert "earlier model turn(s) and their tool results were dropped" in ctx.messages[2]["content"]
    assert ctx.messages[-2]["tool_calls"][0]["id"] == "c39" and ctx.messages[-1]["tool_call_id"] == "c39"
    # each remaining assistant message is followed by its tool answer
    for i, m in enumerate(ctx.messages):
        if m.get("tool_calls"):
            assert ctx.messages[i + 1]["tool_call_id"] == m["tool_calls"][0]["id"]


def test_a_huge_request_is_cut_keeping_its_start() -> None:
    ctx = build_context(SYSTEM, [Entry(role="user", content="a" * 40_000)], max_tokens=1000, max_result_chars=4000)
    user = ctx.messages[1]["content"]
    assert user.startswith("a" * 200) and "cut to fit the context limit of 1000 tokens" in user
    assert ctx.tokens <= 1000 and ctx.trimmed == 1


def test_a_call_without_a_recorded_result_gets_a_note_and_a_stray_result_is_left_out() -> None:
    entries = [
        Entry(role="user", content="q"),
        turn(1),
        Entry(role="tool", content="orphan", tool_call_id="nope"),
        Entry(role="assistant", content="done"),
    ]
    ctx = build_context(SYSTEM, entries, max_tokens=3000, max_result_chars=4000)
    assert [m["role"] for m in ctx.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert ctx.messages[3]["content"] == "[no result was recorded for this call]"


def test_the_closing_line_and_the_tools_count_against_the_budget() -> None:
    tools = openai_tools([{"name": "get_pods", "description": "d" * 4000, "input_schema": {"type": "object"}}])
    entries = [Entry(role="user", content="q"), turn(1), result(1, "z" * 3000)]
    ctx = build_context(SYSTEM, entries, max_tokens=800, max_result_chars=4000, tools=tools, closing="last turn")
    assert ctx.messages[-1] == {"role": "system", "content": "last turn"}
    shown = tool_contents(ctx.messages)[0]  # the only result is the latest: cut shorter, not dropped
    assert ctx.trimmed == 1 and shown.startswith("z" * 200) and "truncated: the result has 3000 characters" in shown
    assert ctx.tokens <= 800
    assert tools[0]["function"]["description"] == "d" * 1000  # descriptions are bounded too


def test_the_latest_results_are_cut_to_fit_before_they_are_dropped() -> None:
    entries = [Entry(role="user", content="q"), turn(1), result(1, "old " * 500), turn(2), result(2, "n" * 4000)]
    ctx = build_context(SYSTEM, entries, max_tokens=700, max_result_chars=4000)
    old, new = tool_contents(ctx.messages)
    assert old.startswith("[dropped")
    shown = int(new.split("only the first ")[1].split(" ")[0])
    assert 200 <= shown < 4000 and new.startswith("n" * shown) and "n" * (shown + 1) not in new
    assert ctx.tokens <= 700 and ctx.trimmed == 2
    # no room even for 200 characters: the latest result is dropped too
    tight = build_context(SYSTEM, entries, max_tokens=120, max_result_chars=4000)
    assert all(c.startswith("[dropped") for c in tool_contents(tight.messages))
