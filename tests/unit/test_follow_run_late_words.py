"""The gateway's stream when the run's result comes before its last words (`follow_run`,
`LATE_WORDS_S`): the result is Temporal's answer, the words are PostgreSQL's NOTIFY, two ways that
can cross under load. A retried turn whose new words are still on their way is waited for, so the
client sees them as they were written, not the notice that the text above is not the answer."""

from __future__ import annotations

import asyncio
from typing import Any

from activities.agents.stream import TextDelta
from agentic_core.agents import AgentResult, AgentStatus
from workers.gateway.chat import LATE_WORDS_S, follow_run
from workers.gateway.deltas import NOT_THE_ANSWER, RETRIED

RUN = "agent-late"


class Handle:
    """A run whose result is ready before `late` of its words arrive."""

    id = RUN

    def __init__(self, result: AgentResult) -> None:
        self._result = result

    async def result(self) -> AgentResult:
        return self._result

    async def query(self, *_: Any, **__: Any) -> Any:  # pragma: no cover - not asked: the agent is named
        raise AssertionError("no progress query expected")


def words(attempt: int, *pieces: str) -> list[TextDelta]:
    return [TextDelta(RUN, 1, attempt, seq, text) for seq, text in enumerate(pieces)]


async def followed(late: list[TextDelta], *, delay_s: float) -> str:
    answer = "Sonarr is fine now."
    res = AgentResult(
        run_id=RUN, request_id="r", agent="observability", status=AgentStatus.DONE, answer=answer, steps=1
    )
    queue: asyncio.Queue[TextDelta] = asyncio.Queue()
    for d in words(1, "Sonarr ", "is ", "down "):  # the first attempt, cut after three words
        queue.put_nowait(d)

    async def arrive() -> None:
        await asyncio.sleep(delay_s)
        for d in late:
            queue.put_nowait(d)

    later = asyncio.create_task(arrive())
    out = "".join([ev.text async for ev in follow_run(Handle(res), queue, named=True)])  # type: ignore[arg-type]
    later.cancel()
    return out


async def test_the_retried_turns_words_that_come_after_the_result_are_shown_as_written() -> None:
    late = words(2, "Sonarr ", "is ", "fine ", "now.")
    out = await followed(late, delay_s=0.1)
    assert out == "Sonarr is down " + RETRIED + "Sonarr is fine now.", out
    assert NOT_THE_ANSWER not in out


async def test_words_that_never_come_end_in_the_notice_and_the_whole_answer() -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    out = await followed([], delay_s=0.0)
    assert out == "Sonarr is down " + NOT_THE_ANSWER + "Sonarr is fine now.", out
    assert loop.time() - t0 < LATE_WORDS_S + 0.5  # waited for them, boundedly
