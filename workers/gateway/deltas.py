"""The model's text as it is written, heard by the gateway: one `LISTEN` connection per gateway
process on `DELTA_CHANNEL` (the model turn's `NOTIFY`s, `activities.agents.stream`), each delta
handed to the streams subscribed to its run. A stream subscribes *before* it starts the run, so
the first piece cannot come before it listens.

The connection is taken from the ledger's pool when the first stream subscribes and given back
`LINGER_S` after the last one is gone (so back-to-back requests keep it, and closing the pool is
never held up for long). Best effort, like the publishing side: when the ledger cannot be reached
the stream goes on without text as it is written, and the answer comes with the run's result.

`StreamedText` keeps account of what a stream showed of that text, so that the client always ends
up with the run's answer (`workers.gateway.chat.follow_run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from activities.agents.stream import DELTA_CHANNEL, TextDelta
from activities.ledger.db import mark_stateful
from agentic_core.generation import REPETITION_NOTE

log = logging.getLogger("agentic.gateway")

LINGER_S = 2.0
PARK_S = 30.0  # a parked subscription (`DeltaHub.park`) waits this long for its page to claim it
MAX_QUEUED = 10_000  # deltas waiting for one slow stream; past that it misses some (a gap it handles)


class DeltaHub:
    def __init__(self, pool: Any) -> None:
        self._pool = pool  # asyncpg.Pool (the ledger's)
        self._conn: Any = None
        self._subs: dict[str, set[asyncio.Queue[TextDelta]]] = {}
        self._lock = asyncio.Lock()
        self._release: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Future[Any]] = set()  # closings under way (kept until done)
        self._parked: dict[str, tuple[contextlib.AsyncExitStack, asyncio.Queue[TextDelta], asyncio.TimerHandle]] = {}

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        delta = TextDelta.decode(payload)
        if delta is None:
            return
        for queue in self._subs.get(delta.run_id, ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(delta)

    async def _listen(self) -> None:
        if self._release is not None:
            self._release.cancel()
            self._release = None
        if self._conn is not None and not self._conn.is_closed():
            return
        async with self._lock:
            if self._conn is not None and self._conn.is_closed():
                await self._give_back()
            if self._conn is None:
                conn = await asyncio.wait_for(self._pool.acquire(), timeout=5)
                mark_stateful(conn)  # LISTEN: the pool UNLISTENs it when it comes back
                try:
                    await conn.add_listener(DELTA_CHANNEL, self._heard)
                except BaseException:
                    await self._pool.release(conn)
                    raise
                self._conn = conn

    async def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(DELTA_CHANNEL, self._heard)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    def _in_background(self, closing: Any) -> None:
        task = asyncio.ensure_future(closing)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _later(self) -> None:
        if not self._subs and self._conn is not None:
            self._release = None
            self._in_background(self._give_back())

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: str) -> AsyncIterator[asyncio.Queue[TextDelta] | None]:
        """The run's deltas as they are heard (None: they cannot be heard now; the stream goes on
        without them)."""
        queue: asyncio.Queue[TextDelta] = asyncio.Queue(MAX_QUEUED)
        listening = True
        try:
            await self._listen()
        except Exception as exc:
            log.warning("the model's text cannot be streamed now (the ledger: %s)", type(exc).__name__)
            listening = False
        if not listening:
            yield None
            return
        self._subs.setdefault(run_id, set()).add(queue)
        try:
            yield queue
        finally:
            subs = self._subs.get(run_id)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self._subs[run_id]
            if not self._subs and self._conn is not None and self._release is None:
                self._release = asyncio.get_running_loop().call_later(LINGER_S, self._later)

    async def park(self, run_id: str, ttl_s: float = PARK_S) -> None:
        """Subscribe to `run_id` now, for a stream that will come later (the console's chat form
        starts the run, then its page connects after the redirect, when the first turn may have
        begun): the words heard meanwhile wait in the queue. Unclaimed after `ttl_s`, it closes."""
        if run_id in self._parked:
            return
        stack = contextlib.AsyncExitStack()
        queue = await stack.enter_async_context(self.subscribe(run_id))
        if queue is None:
            await stack.aclose()
            return
        loop = asyncio.get_running_loop()
        expiry = loop.call_later(ttl_s, lambda: self._expire(run_id, stack))
        self._parked[run_id] = (stack, queue, expiry)

    def _expire(self, run_id: str, stack: contextlib.AsyncExitStack) -> None:
        parked = self._parked.get(run_id)
        if parked is not None and parked[0] is stack:
            del self._parked[run_id]
            self._in_background(stack.aclose())

    @contextlib.asynccontextmanager
    async def claim_or_subscribe(self, run_id: str) -> AsyncIterator[asyncio.Queue[TextDelta] | None]:
        """The subscription `park` left for `run_id` (its words from the run's start), or a new one
        (words from now on: a reconnect, a reload); closed when the stream ends."""
        parked = self._parked.pop(run_id, None)
        if parked is None:
            async with self.subscribe(run_id) as queue:
                yield queue
            return
        stack, queue, expiry = parked
        expiry.cancel()
        try:
            yield queue
        finally:
            await stack.aclose()


RETRIED = "\n\n> *the model turn was retried; what it writes now:*\n\n"
NOT_THE_ANSWER = (
    "\n\n> *the text above is not the answer (the model turn was retried or its stream was cut); the answer:*\n\n"
)


@dataclass
class _Turn:
    attempt: int
    seq: int = 0  # the next delta expected
    text: str = ""  # what the client was shown of this turn since its start (or the last notice)
    gap: bool = False  # a delta of this attempt was missed: show no more of it


def _cut_at_a_loop(shown: str, answer: str) -> bool:
    """The answer is a reply cut at a runaway repetition (`agentic_core.generation`) whose stream
    showed more copies of the loop before the cut, then the same note."""
    if not (shown.endswith(REPETITION_NOTE) and answer.endswith(REPETITION_NOTE)):
        return False
    kept = answer[: -len(REPETITION_NOTE)].rstrip()
    return shown.startswith(kept)


class StreamedText:
    """What a stream has shown of the model's text, turn by turn, so that what the client ends up
    with is the run's answer, never silently different text (docs/gateway.md, "Streaming"):

    - a turn's deltas are shown in sequence; at a gap (a delta missed, or a stream joined midway,
      as a reattaching client does) that attempt shows no more;
    - a retried turn (a higher attempt, from its first delta) starts again after a notice;
      deltas of an older attempt are dropped;
    - at the end (`rest`), if what was shown of the answer's turn is the start of the answer, the
      rest of it (nothing, for an answer cut at a loop after the stream showed more of it);
      else a notice and the whole answer."""

    def __init__(self) -> None:
        self.turns: dict[int, _Turn] = {}

    def take(self, d: TextDelta) -> tuple[str, bool] | None:
        """(the text to show for a delta, whether it is the first of its turn), or None: not shown."""
        turn = self.turns.get(d.step)
        if turn is not None and d.attempt < turn.attempt:
            return None
        first = False
        if turn is None or d.attempt > turn.attempt:
            shown = turn.text if turn is not None else ""
            turn = self.turns[d.step] = _Turn(attempt=d.attempt, text=shown)
            if d.seq != 0:
                turn.gap = True  # joined midway: what was shown (if anything) stays as it is
                return None
            first = turn.text == ""
            prefix = RETRIED if turn.text else ""
            turn.text = ""
        else:
            prefix = ""
        if turn.gap or d.seq != turn.seq:
            turn.gap = True
            return None
        turn.seq += 1
        turn.text += d.text
        return prefix + d.text, first

    def rest(self, step: int, answer: str) -> str | None:
        """What is left to show of the answer written at `step`: None when nothing of it was shown
        (the whole answer goes out as it would without streaming)."""
        turn = self.turns.get(step)
        if turn is None or not turn.text:
            return None
        if answer.startswith(turn.text):
            return answer[len(turn.text) :]
        if _cut_at_a_loop(turn.text, answer):
            return ""  # the stream showed the loop's copies, then the note that says the answer ends there
        return NOT_THE_ANSWER + answer
