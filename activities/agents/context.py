"""The model's context for one agent turn, built from the run's transcript within the limits.
Pure: no I/O (the `agents.model_turn` activity loads the transcript and calls the model).

- Tokens are counted roughly: a quarter of the characters, plus a few per message (`estimate`).
  Good enough for a budget: the point is that a long run never grows past it.
- One tool result is shown up to `max_result_chars`; a longer one is cut there with a note
  that says so, how long it is, where the whole of it is stored, and how to see other parts.
- Over `max_context_tokens`, the oldest tool results are replaced first, one by one, by a
  one-line note saying they were dropped; the latest turn's results wait. If that is not
  enough, the oldest whole exchanges (a model turn with its results) go, then the latest results
  are cut shorter (with the note saying how much is shown), then dropped too, then the request
  itself is cut; the system prompt, the request's start and the latest turn always stay.
- The result keeps the OpenAI chat shape valid: every tool call of an assistant message is
  answered by a tool message (a missing one becomes a note).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PER_MESSAGE_TOKENS = 4
CHARS_PER_TOKEN = 4
MIN_SHOWN = 200  # of the latest results, cut to fit the context, at least this much is shown


def estimate(text: str) -> int:
    """Roughly how many tokens `text` is (a quarter of its characters, rounded up)."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass
class Entry:
    """One transcript message as the ledger holds it. For a result stored as a blob, `content` is
    its head (at least `max_result_chars + 1` characters of it when it is longer) and `size` the
    whole length; `ref` names the blob."""

    role: str  # system, user, assistant, tool
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # assistant: {id, name, arguments}
    tool_call_id: str | None = None
    tool_name: str | None = None
    status: str | None = None  # tool: ok, error, refused, approved, denied, limited
    size: int | None = None  # tool: the whole result's length (None: `content` is all of it)
    ref: str | None = None  # tool: the blob holding the whole result


@dataclass
class Context:
    messages: list[dict[str, Any]]
    tokens: int  # the estimate of the messages and tools
    trimmed: int = 0  # tool results (or whole exchanges, or the request) dropped or cut to fit
    truncated: int = 0  # tool results shown cut at max_result_chars
    over: bool = False  # still over the budget with everything droppable gone


def truncation_note(size: int, shown: int, ref: str | None) -> str:
    where = f" The whole result is stored as {ref} (`agentic agents result {ref}`)." if ref else ""
    return (
        f"\n[truncated: the result has {size} characters and only the first {shown} are shown.{where} "
        "To see other parts, call the tool again asking for less: fewer lines, a narrower query or time range.]"
    )


def dropped_note(tool: str | None, size: int, ref: str | None, max_tokens: int) -> str:
    stored = f", stored as {ref}" if ref else ""
    return (
        f"[dropped to fit the context limit of {max_tokens} tokens: the result of {tool or 'a tool'} "
        f"({size} characters{stored}); call the tool again if you still need it]"
    )


def _cost(message: dict[str, Any]) -> int:
    text = message.get("content") or ""
    calls = message.get("tool_calls")
    extra = json.dumps(calls) if calls else ""
    return PER_MESSAGE_TOKENS + estimate(text) + estimate(extra)


@dataclass
class _Msg:
    message: dict[str, Any]
    exchange: int  # -1: the system prompt; 0: the request; n: the n-th assistant turn and its results
    tool: bool = False
    tool_name: str | None = None
    size: int = 0
    ref: str | None = None
    raw: str = ""  # a tool result's text as stored (its head), before any cut
    shown: int = 0  # how much of `raw` the message shows
    noted: bool = False  # the message ends with a truncation note
    dropped: bool = False


def _render(entries: list[Entry], max_result_chars: int) -> tuple[list[_Msg], int]:
    out: list[_Msg] = []
    truncated = 0
    exchange = 0
    pending: list[str] = []  # tool call ids of the last assistant message not answered yet

    def close_pending() -> None:
        for call_id in pending:
            out.append(
                _Msg(
                    {"role": "tool", "tool_call_id": call_id, "content": "[no result was recorded for this call]"},
                    exchange,
                    tool=True,
                )
            )
        pending.clear()

    for e in entries:
        if e.role == "assistant":
            close_pending()
            exchange += 1
            message: dict[str, Any] = {"role": "assistant", "content": e.content or ""}
            if e.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c.get("name", ""), "arguments": c.get("arguments") or "{}"},
                    }
                    for c in e.tool_calls
                ]
                pending = [str(c["id"]) for c in e.tool_calls]
            out.append(_Msg(message, exchange))
        elif e.role == "tool":
            if e.tool_call_id not in pending:
                continue  # a result without its call: the chat shape would be invalid
            pending.remove(str(e.tool_call_id))
            size = e.size if e.size is not None else len(e.content)
            text = e.content
            if size > max_result_chars:
                text = text[:max_result_chars] + truncation_note(size, max_result_chars, e.ref)
                truncated += 1
            out.append(
                _Msg(
                    {"role": "tool", "tool_call_id": e.tool_call_id, "content": text},
                    exchange,
                    tool=True,
                    tool_name=e.tool_name,
                    size=size,
                    ref=e.ref,
                    raw=e.content,
                    shown=min(len(e.content), max_result_chars),
                    noted=size > max_result_chars,
                )
            )
        else:
            close_pending()
            out.append(_Msg({"role": e.role, "content": e.content}, exchange))
    close_pending()
    return out, truncated


def build_context(
    system: str,
    entries: list[Entry],
    *,
    max_tokens: int,
    max_result_chars: int,
    tools: list[dict[str, Any]] | None = None,
    closing: str | None = None,
) -> Context:
    """The messages for the next model turn: `system` first, the transcript, then `closing` (a
    last system line, e.g. "this is your last turn") when given; within `max_tokens` together
    with the `tools` offered (see the module doc)."""
    msgs, truncated = _render(entries, max_result_chars)
    head = _Msg({"role": "system", "content": system}, -1)
    tail = [_Msg({"role": "system", "content": closing}, 10**9)] if closing else []
    fixed = _cost(head.message) + sum(_cost(m.message) for m in tail) + (estimate(json.dumps(tools)) if tools else 0)
    total = fixed + sum(_cost(m.message) for m in msgs)
    trimmed = 0

    last = max((m.exchange for m in msgs), default=0)

    def drop(m: _Msg) -> None:
        nonlocal total, trimmed
        before = _cost(m.message)
        m.message["content"] = dropped_note(m.tool_name, m.size, m.ref, max_tokens)
        m.dropped = True
        total += _cost(m.message) - before
        trimmed += 1

    # 1. The oldest tool results first, one by one (the latest turn's results wait).
    for m in msgs:
        if total <= max_tokens:
            break
        if m.tool and not m.dropped and m.exchange < last:
            drop(m)

    latest = sorted((m for m in msgs if m.tool and not m.dropped and m.exchange == last), key=lambda m: -len(m.raw))

    def shrink() -> None:
        nonlocal total, trimmed
        for m in latest:
            if total <= max_tokens:
                return
            room = m.shown - (total - max_tokens) * CHARS_PER_TOKEN - (0 if m.noted else 300)  # the note's room
            if MIN_SHOWN <= room < m.shown:
                before = _cost(m.message)
                m.message["content"] = m.raw[:room] + truncation_note(m.size, room, m.ref)
                m.shown, m.noted = room, True
                total += _cost(m.message) - before
                trimmed += 1

    # 2. The latest turn's results are cut shorter (never below MIN_SHOWN characters), the longest
    #    first, with the note saying how much is shown.
    shrink()

    # 3. Whole exchanges, oldest first, never the latest one; a note says how many went.
    gone_turns = 0
    note = _Msg({"role": "system", "content": ""}, 0)
    for ex in range(1, last):
        if total <= max_tokens:
            break
        gone = [m for m in msgs if m.exchange == ex]
        total -= sum(_cost(m.message) for m in gone)
        msgs = [m for m in msgs if m.exchange != ex]
        if not gone_turns:
            total += _cost(note.message) + 12
            first_turn = next((i for i, m in enumerate(msgs) if m.exchange > 0), len(msgs))
            msgs.insert(first_turn, note)
        gone_turns += 1
        trimmed += 1
    if gone_turns:
        note.message["content"] = (
            f"[{gone_turns} earlier model turn(s) and their tool results were dropped to fit the context limit "
            f"of {max_tokens} tokens]"
        )

    shrink()

    # 4. The latest results are dropped too.
    for m in latest:
        if total <= max_tokens:
            break
        drop(m)

    # 5. The request (and anything else before the first turn) is cut, keeping its start.
    if total > max_tokens:
        for m in msgs:
            if m.exchange == 0 and m.message["role"] == "user":
                over_chars = (total - max_tokens) * CHARS_PER_TOKEN
                text = m.message["content"]
                keep = max(200, len(text) - over_chars - 200)
                if keep < len(text):
                    before = _cost(m.message)
                    m.message["content"] = (
                        text[:keep] + f"\n[cut to fit the context limit of {max_tokens} tokens: "
                        f"{len(text) - keep} of {len(text)} characters left out]"
                    )
                    total += _cost(m.message) - before
                    trimmed += 1
                break

    messages = [head.message, *(m.message for m in msgs), *(m.message for m in tail)]
    return Context(messages=messages, tokens=total, trimmed=trimmed, truncated=truncated, over=total > max_tokens)


def openai_tools(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ToolSpec dumps as OpenAI function tools."""
    out = []
    for spec in specs:
        schema = spec.get("input_schema") or {"type": "object", "properties": {}}
        out.append(
            {
                "type": "function",
                "function": {
                    "name": spec["name"],
                    "description": (spec.get("description") or "")[:1000],
                    "parameters": schema,
                },
            }
        )
    return out
