"""The bot's group commands: /incidents (open ones), /status ID (one incident's state),
/runbooks (levels and records). Only in the operations group; answers are HTML, split at
Telegram's length limit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import ContextTypes
from temporalio.client import Client
from temporalio.service import RPCError

from agentic_core.incident import QUERY_STATE, IncidentState
from workers.telegram.modify import call_text
from workers.telegram.render import esc

if TYPE_CHECKING:
    from activities.ledger.repository import Ledger


class _Chat(Protocol):
    chat_id: int  # the operations group (`BotConfig`)


class GroupCommands:
    """A part of `TelegramBot`: the commands, over its client, ledger and configuration."""

    client: Client
    ledger: Ledger
    cfg: _Chat

    def _from_our_chat(self, update: Update) -> bool:
        chat = update.effective_chat
        return chat is not None and chat.id == self.cfg.chat_id

    async def _reply(self, update: Update, html: str) -> None:
        msg = update.effective_message
        if msg is not None:
            for piece in _split_html(html):
                await msg.reply_text(piece, parse_mode=ParseMode.HTML)

    async def cmd_incidents(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not self._from_our_chat(update):
            return
        from agentic_core import search_attributes as sa

        lines: list[str] = []
        query = "WorkflowType = 'IncidentWorkflow' AND ExecutionStatus = 'Running'"
        async for wf in self.client.list_workflows(query, limit=30):
            attrs = wf.typed_search_attributes
            status = attrs.get(sa.INCIDENT_STATUS) or "open"
            sev = attrs.get(sa.INCIDENT_SEVERITY) or "?"
            name = attrs.get(sa.ALERT_NAME) or ""
            lines.append(f"• <code>{esc(wf.id)}</code> {esc(status)} · {esc(sev)} · {esc(name)}")
        await self._reply(update, "<b>Open incidents</b>\n" + ("\n".join(lines) if lines else "none"))

    async def cmd_status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not self._from_our_chat(update):
            return
        if not context.args:
            await self._reply(update, "usage: /status INCIDENT_ID")
            return
        iid = context.args[0]
        try:
            st = await self.client.get_workflow_handle(iid).query(QUERY_STATE, result_type=IncidentState)
        except RPCError as exc:
            await self._reply(update, f"no incident <code>{esc(iid)}</code>: {esc(exc.message)}")
            return
        lines = [f"<b>{esc(st.title or iid)}</b>", f"status: {esc(st.status.value)}"]
        if st.runbook_id:
            lines.append(f"runbook: <code>{esc(st.runbook_id)}</code>")
        if st.plan:
            lines.append(f"plan <code>{esc((st.plan_hash or '')[:12])}</code>:")
            lines += [f"  {i + 1}. <code>{esc(call_text(c))}</code>" for i, c in enumerate(st.plan)]
        if st.decision is not None:
            lines.append(f"decision: {esc(st.decision.choice)} by {esc(st.decision.by or 'nobody')}")
        lines += [f"  ran {a.index + 1}. {esc(a.tool)}: {esc(a.status)}" for a in st.actions]
        if st.outcome is not None:
            lines.append(f"outcome: {esc(st.outcome.outcome)} {esc(st.outcome.detail)}")
        await self._reply(update, "\n".join(lines))

    async def cmd_runbooks(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not self._from_our_chat(update):
            return
        lines = ["<b>Runbooks</b> (level · successes/executions)"]
        for rb in await self.ledger.list_runbooks():
            stats = await self.ledger.runbook_stats(rb.id)
            record = f"{stats.successes}/{stats.executions}" if stats is not None else "0/0"
            lines.append(f"• <code>{esc(rb.id)}</code> {esc(rb.automation_level.value)} · {record}")
        await self._reply(update, "\n".join(lines))


def _split_html(text: str, size: int = 4000) -> list[str]:
    """Split on line ends (our command answers never open a tag across lines)."""
    out: list[str] = []
    cur = ""
    for line in text.split("\n"):
        if cur and len(cur) + len(line) + 1 > size:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n{line}" if cur else line[:size]
    return [*out, cur] if cur else out
