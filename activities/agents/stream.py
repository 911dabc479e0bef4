"""A model turn's text as the model writes it, for a caller that streams the answer (the gateway's
`stream: true`; docs/gateway.md, "Streaming"): PostgreSQL `NOTIFY` on the ledger, channel
`DELTA_CHANNEL`, one JSON payload per piece (`TextDelta`: run, step, attempt, sequence number, text).

It is a side channel and best effort: the turn's result and the transcript in the ledger are the
same with or without it, and a listener that misses a piece (a gap in the sequence), hears a
retried attempt, or hears nothing, still gets the whole answer from the run's result. Nothing is
logged of the text.

`TextPublisher` sends in order, one `NOTIFY` in flight at a time: pieces that arrive while one is
on its way go together in the next (so a fast model costs few round trips), each payload under
PostgreSQL's 8000-byte limit. The listener is the gateway's (`workers.gateway.deltas`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("agentic.agents")

DELTA_CHANNEL = "agentic_agent_text"
# characters of text in one payload: at most 6 bytes each once JSON-escaped, so a payload stays
# well under PostgreSQL's 8000 bytes with its run id and numbers
MAX_PIECE_CHARS = 1000
FLUSH_TIMEOUT_S = 5.0  # the turn waits at most this for its last pieces to go out


@dataclass(frozen=True)
class TextDelta:
    run_id: str
    step: int  # the model turn (1 for the first)
    attempt: int  # the activity's attempt: a retried turn starts again at seq 0
    seq: int  # 0, 1, 2, … within (run, step, attempt)
    text: str

    def encode(self) -> str:
        doc = {"r": self.run_id, "s": self.step, "a": self.attempt, "q": self.seq, "t": self.text}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, payload: str) -> TextDelta | None:
        """The delta in a payload, or None for one that is not ours (never raises)."""
        try:
            doc = json.loads(payload)
            delta = cls(run_id=doc["r"], step=doc["s"], attempt=doc["a"], seq=doc["q"], text=doc["t"])
        except (ValueError, KeyError, TypeError):
            return None
        ok = isinstance(delta.run_id, str) and isinstance(delta.text, str)
        return delta if ok and all(type(v) is int for v in (delta.step, delta.attempt, delta.seq)) else None


class TextPublisher:
    """Publishes one model turn's text, piece by piece, on `DELTA_CHANNEL` (see the module doc).
    Call it with each piece (it never blocks and never raises); `aclose()` sends what is left."""

    def __init__(self, pool: Any, run_id: str, step: int, attempt: int) -> None:
        self._pool = pool  # asyncpg.Pool (the ledger's)
        self._run_id, self._step, self._attempt = run_id, step, attempt
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._failed = False
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def sent(self) -> int:
        """How many payloads went out."""
        return self._seq

    def __call__(self, piece: str) -> None:
        if self._failed or not piece:
            return
        self._pending.append(piece)
        self._wake.set()
        if self._task is None:
            # outside the trace (an empty context): a span per NOTIFY would be dozens per answer,
            # and the model call's span covers the turn
            self._task = asyncio.create_task(self._run(), context=contextvars.Context())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            text, self._pending = "".join(self._pending), []
            for i in range(0, len(text), MAX_PIECE_CHARS):
                if not await self._send(text[i : i + MAX_PIECE_CHARS]):
                    return
            if self._closing and not self._pending:
                return

    async def _send(self, text: str) -> bool:
        delta = TextDelta(self._run_id, self._step, self._attempt, self._seq, text)
        try:
            async with self._pool.acquire() as conn:
                await conn.execute("SELECT pg_notify($1, $2)", DELTA_CHANNEL, delta.encode())
        except Exception as exc:  # best effort: the answer still comes with the run's result
            self._failed = True
            self._pending = []
            log.warning(
                "agent run %s step %d: the streamed text stops here (%s)", self._run_id, self._step, type(exc).__name__
            )
            return False
        self._seq += 1
        return True

    async def aclose(self) -> None:
        """Send what is left (within `FLUSH_TIMEOUT_S`), so the pieces go out before the turn's result."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=FLUSH_TIMEOUT_S)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
