"""Telling the operator that a part of the stack is down, and that it is back (`PartAlerts`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from workers.settings import Settings
from workers.stack.parts import Part, log_tail
from workers.stack.restarts import RestartPolicy

SUPERVISOR_SOURCE = "agentic-supervisor"  # the `source` of the supervisor's events at the intake
PART_DOWN_ALERT = "AgenticPartDown"


@dataclass
class _Notice:
    channel: Literal["intake", "telegram"]
    what: str  # for the supervisor's own log lines
    body: dict[str, Any]
    warned: bool = False  # the supervisor's log said once that it could not be sent yet


class PartAlerts:
    """Tells the operator that a part is down, and that it is back, through what still works:

    - a generic event to the stack's intake (`POST /events`, source `agentic-supervisor`, one group
      per part, `firing` then `resolved`): the intake signals the incident into Temporal, which
      keeps it even while the worker is down;
    - with Telegram configured, a `sendMessage` to the chat straight from the supervisor (the bot
      may be the part that is down).

    Undelivered notices (the intake may be the part that is down) are tried again every
    `retry_s`, in order per channel; one refused for good (a 4xx other than 429) is dropped with a
    line in the supervisor's log.
    """

    MAX_PENDING = 200

    def __init__(self, eff: Settings, out: Callable[[str], None], *, retry_s: float = 2.0) -> None:
        self.eff = eff
        self.out = out
        self.retry_s = retry_s
        self.pending: list[_Notice] = []
        self._wake = asyncio.Event()

    @property
    def telegram(self) -> bool:
        return self.eff.telegram_token is not None and self.eff.telegram_chat_id is not None

    def part_down(self, p: Part, policy: RestartPolicy) -> None:
        tail = log_tail(p.log, 3)
        detail = (
            f"{p.name} ({p.role}) crashed {p.crash_streak} times in a row (last exit code {p.last_exit}); "
            f"the supervisor keeps starting it again, every {policy.backoff_max_s:.0f}s at most. Log: {p.log}"
        )
        self._event(p, "firing", detail + (f". Last lines: {tail}" if tail else ""))
        if self.telegram:
            text = f"🚨 agentic-platform: part {p.name} is down. {detail}" + (f"\n{tail}" if tail else "")
            self._telegram(p, text[:4000])

    def part_back(self, p: Part, down_for: timedelta) -> None:
        detail = f"{p.name} is healthy again after {p.restarts} restarts (down {int(down_for.total_seconds())}s)"
        self._event(p, "resolved", detail)
        if self.telegram:
            self._telegram(p, f"✅ agentic-platform: part {p.name} is back. {detail}")

    def _event(self, p: Part, status: str, description: str) -> None:
        body = {
            "source": SUPERVISOR_SOURCE,
            "title": f"agentic part {p.name} is down",
            "status": status,
            "severity": "critical",
            "description": description,
            "labels": {"alertname": PART_DOWN_ALERT, "part": p.name},
            "group": f"{SUPERVISOR_SOURCE}/part/{p.name}",
            "fingerprint": f"agentic-part-{p.name}",
        }
        self._queue(_Notice("intake", f"{status} event for {p.name}", body))

    def _telegram(self, p: Part, text: str) -> None:
        self._queue(
            _Notice(
                "telegram", f"Telegram message about {p.name}", {"chat_id": self.eff.telegram_chat_id, "text": text}
            )
        )

    def _queue(self, notice: _Notice) -> None:
        self.pending.append(notice)
        del self.pending[: -self.MAX_PENDING]
        self._wake.set()

    async def run(self) -> None:
        """Deliver what is pending, now and every `retry_s` while anything is left; until cancelled."""
        while True:
            self._wake.clear()
            await self.flush()
            wait = self.retry_s if self.pending else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def flush(self) -> None:
        import httpx

        blocked: set[str] = set()
        async with httpx.AsyncClient(timeout=10) as http:
            for notice in list(self.pending):
                if notice.channel in blocked:
                    continue
                outcome = await self._send(http, notice)
                if outcome == "retry":
                    blocked.add(notice.channel)  # keep the order of a channel's notices
                    continue
                self.pending.remove(notice)

    async def _send(self, http: Any, notice: _Notice) -> Literal["sent", "retry", "dropped"]:
        import httpx

        eff = self.eff
        if notice.channel == "intake":
            token = eff.intake_token.get_secret_value() if eff.intake_token else ""
            url = f"http://{eff.host}:{eff.intake_port}/events"
            headers = {"Authorization": f"Bearer {token}"}
            where = url
        else:
            assert eff.telegram_token is not None
            base = eff.telegram_api_base.rstrip("/")
            url = f"{base}/bot{eff.telegram_token.get_secret_value()}/sendMessage"
            headers = {}
            where = f"the Bot API at {base}"  # the URL holds the token: never print it
        try:
            r = await http.post(url, json=notice.body, headers=headers)
        except httpx.HTTPError as exc:
            if not notice.warned:
                self.out(f"! cannot send the {notice.what} to {where} yet ({type(exc).__name__}): will retry")
                notice.warned = True
            return "retry"
        if r.status_code < 300:
            self.out(f"  → sent the {notice.what} to {where}")
            return "sent"
        if r.status_code == 429 or r.status_code >= 500:
            return "retry"
        self.out(f"! {where} refused the {notice.what} (HTTP {r.status_code}): {r.text[:200]}")
        return "dropped"
