"""The gateway's stream when a turn's first words come just as the run ends (`follow_run`): the
progress query asked for the lines due before those words loses the race with the run's end, and
the lines come from the run's result instead, still before the words (CI saw the tool line come
after the answer once, under load). Later turns' lines stay after the words, as they happened."""

from __future__ import annotations

import asyncio
from typing import Any

from activities.agents.stream import TextDelta
from agentic_core.agents import AgentResult, AgentStatus, AgentToolCall, ResultRef, ToolCallRecord
from workers.gateway.chat import follow_run

RUN = "agent-ending"


class Handle:
    """A run that ends `end_s` after it is followed, and whose progress query never answers."""

    id = RUN

    def __init__(self, result: AgentResult, end_s: float) -> None:
        self._result, self._end_s = result, end_s
        self.queries = 0

    async def result(self) -> AgentResult:
        await asyncio.sleep(self._end_s)
        return self._result

    async def query(self, *_: Any, **__: Any) -> Any:
        self.queries += 1
        await asyncio.Event().wait()  # the worker is replaying the run that just closed


def record(step: int, call_id: str, text: str) -> ToolCallRecord:
    call = AgentToolCall(call_id=call_id, tool="note", arguments={"text": text})
    return ToolCallRecord(step=step, call=call, status="ok", result=ResultRef(ref=call_id, size=len(text)))


async def test_the_lines_before_a_turns_words_come_from_the_result_when_the_query_loses_the_race() -> None:
    answer = "sonarr is fine."
    res = AgentResult(
        run_id=RUN,
        request_id="r",
        agent="observability",
        status=AgentStatus.DONE,
        answer=answer,
        steps=3,
        tool_calls=[record(1, "c1", "sonarr"), record(3, "c3", "later")],
    )
    queue: asyncio.Queue[TextDelta] = asyncio.Queue()
    for seq, piece in enumerate(("sonarr ", "is ", "fine.")):  # the second turn's words
        queue.put_nowait(TextDelta(RUN, 2, 1, seq, piece))
    handle = Handle(res, end_s=0.05)
    events = [ev async for ev in follow_run(handle, queue, named=True)]  # type: ignore[arg-type]
    out = "".join(ev.text for ev in events)
    assert handle.queries == 1  # it asked, and the run's end answered instead
    first = '> `note` {"text": "sonarr"}: ok (6 characters)\n'
    later = '> `note` {"text": "later"}: ok (5 characters)\n'
    assert out.startswith(first + "\nsonarr is fine."), out  # step 1's line before step 2's words
    assert out.index(later) > out.index("sonarr is fine."), out  # step 3's after them
    assert out.count(first) == 1 and out.count(later) == 1
