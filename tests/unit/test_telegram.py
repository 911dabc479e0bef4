"""Telegram pieces without servers: signed callback data, rendering and escaping, routing,
the modify reply parser, the settings. (End to end: tests/e2e/test_telegram_e2e.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_core.incident import NotifyInput, NotifyKind
from agentic_core.models import ToolCall
from tests.support.telegram_emulator import ApiError, parse_html
from workers.settings import Settings
from workers.telegram import signing
from workers.telegram.modify import apply_arguments, parse_assignments
from workers.telegram.render import CAPTION_LIMIT, TEXT_LIMIT, Card, chunks, marked, u16
from workers.telegram.routing import Router, parse_routes

SECRET = b"k" * 32
HASH = "0123456789abcdef" * 4


# --------------------------------------------------------------------------- signing


@given(approval_id=st.text(min_size=1, max_size=300), choice=st.sampled_from(["approved", "ignored", "modified"]))
@settings(max_examples=200)
def test_callback_data_fits_64_bytes_and_verifies(approval_id: str, choice: signing.Choice) -> None:
    data = signing.sign(SECRET, approval_id, HASH, choice)
    assert len(data.encode()) <= 64
    cb = signing.parse(data)
    assert cb.choice == choice and cb.hash8 == HASH[:8] and cb.ref == signing.approval_ref(approval_id)
    assert signing.verify(SECRET, approval_id, cb)
    assert not signing.verify(b"other secret", approval_id, cb)
    assert not signing.verify(SECRET, approval_id + "x", cb)


def test_any_altered_field_fails_verification() -> None:
    aid = "inc-1234-approval-1795280523297"
    data = signing.sign(SECRET, aid, HASH, "approved")
    version_choice, ref, hash8, sig = data.split(":")
    altered = [
        f"1i:{ref}:{hash8}:{sig}",  # approve turned into ignore
        f"{version_choice}:{ref}:ffffffff:{sig}",  # another plan
        f"{version_choice}:{ref}:{hash8}:{'A' * 16}",  # another signature
    ]
    for forged in altered:
        assert not signing.verify(SECRET, aid, signing.parse(forged)), forged
    for bad in ("", "hello", "2a:x:y:z", "1z:" + ref + ":" + hash8 + ":" + sig, "1a:short:" + hash8 + ":" + sig):
        with pytest.raises(signing.BadCallback):
            signing.parse(bad)


# --------------------------------------------------------------------------- rendering


@given(text=st.text(max_size=6000), history=st.lists(st.text(max_size=80), max_size=3))
@settings(max_examples=150)
def test_any_text_renders_to_valid_html_within_limits(text: str, history: list[str]) -> None:
    for limit in (TEXT_LIMIT, CAPTION_LIMIT):
        html, cut = Card(NotifyKind.DIAGNOSIS, text, subject="inc-<1>&", plan_hash=HASH, history=history).render(limit)
        try:
            plain = parse_html(html)  # what Telegram's parser would do
        except ApiError as exc:
            raise AssertionError(f"invalid HTML: {exc.description}: {html[:200]!r}") from exc
        assert u16(html) <= limit and u16(plain) <= limit
        if not cut:
            assert marked(text) in plain


def test_markup_in_alert_text_is_shown_as_typed() -> None:
    html, cut = Card(NotifyKind.QUESTION, 'Pod <b>x</b> & "y" </code>').render()
    assert not cut
    assert parse_html(html).endswith('Pod <b>x</b> & "y" </code>')


def test_executed_actions_are_marked() -> None:
    html, _ = Card(
        NotifyKind.UPDATE, "Title\nRan:\n  1. get_pods: succeeded\n  2. rollout_restart: failed: boom"
    ).render()
    assert "1. get_pods: ✓ succeeded" in html and "2. rollout_restart: ✗ failed: boom" in html


def test_long_text_is_truncated_and_split_for_details() -> None:
    text = "line\n" * 2000
    html, cut = Card(NotifyKind.DIAGNOSIS, text).render()
    assert cut and "press 🔎 Details" in parse_html(html)
    parts = chunks(text)
    assert len(parts) >= 3 and all(u16(p) <= TEXT_LIMIT for p in parts)
    assert "".join(parse_html(p) for p in parts).count("line") == 2000
    amps = chunks("&" * 9000)
    assert all(u16(p) <= TEXT_LIMIT for p in amps) and "".join(parse_html(p) for p in amps) == "&" * 9000


# --------------------------------------------------------------------------- routing


def notify(route: str, kind: NotifyKind = NotifyKind.QUESTION) -> NotifyInput:
    return NotifyInput(incident_id="i", kind=kind, route=route, text="t")


def test_routing_defaults_and_overrides() -> None:
    r = Router()
    assert r.topic_for(notify("arr")) == "arr"
    assert r.topic_for(notify("home_assistant")) == "home-assistant"
    assert r.topic_for(notify("platform")) == "infrastructure"
    assert r.topic_for(notify("critical")) == "critical"
    assert r.topic_for(notify("arr", NotifyKind.ESCALATION)) == "critical"
    assert r.topic_for(notify("arr", NotifyKind.RESOLVED)) == "resolved"
    assert r.topic_for(notify("weekly", NotifyKind.REPORT)) == "weekly"
    assert r.topic_for(notify("something-new")) == "infrastructure"
    custom = Router(parse_routes("platform=arr, arr=home-assistant,critical=arr"))
    assert custom.topic_for(notify("platform")) == "arr"
    assert custom.topic_for(notify("arr")) == "home-assistant"
    assert custom.topic_for(notify("critical")) == "critical"  # critical always reaches Critical Alerts
    with pytest.raises(ValueError, match="unknown topic"):
        parse_routes("arr=nowhere")
    with pytest.raises(ValueError, match="not route=topic"):
        parse_routes("arr")


# --------------------------------------------------------------------------- modify replies


def test_parse_assignments_and_apply() -> None:
    assert parse_assignments('memory=2Gi replicas=3, name="a b" on=true') == {
        "memory": "2Gi",
        "replicas": 3,
        "name": "a b",
        "on": True,
    }
    for bad in ("", "memory", "=2", "memory 2Gi"):
        with pytest.raises(ValueError):
            parse_assignments(bad)
    plan = [ToolCall(tool="set_memory_limit", arguments={"deployment": "x", "value": "1Gi"})]
    assert apply_arguments(plan, {"value": "2Gi"})[0].arguments == {"deployment": "x", "value": "2Gi"}
    with pytest.raises(ValueError, match="no action of the plan takes memory"):
        apply_arguments(plan, {"memory": "2Gi"})


# --------------------------------------------------------------------------- settings


def test_telegram_settings_and_approver_identities() -> None:
    s = Settings(telegram_approvers="111, 222")
    assert s.telegram_approver_ids == [111, 222] and not s.telegram_enabled
    assert s.approver_list == []  # anyone may answer: the bot still enforces its own allow-list
    s = Settings(approvers="alice", telegram_approvers="111", telegram_token="1:x")
    assert s.approver_list == ["alice", "tg:111"] and s.telegram_enabled
    assert "1:x" not in repr(s)
    with pytest.raises(ValueError, match="numeric user ids"):
        Settings(telegram_approvers="alice")


def test_stack_starts_a_bot_part_only_with_a_token(tmp_path: Path) -> None:
    from workers.stack.env import effective_settings
    from workers.stack.parts import build_parts

    s = Settings(data_dir=tmp_path, telegram_token="1:x", telegram_chat_id=-100123)
    eff = effective_settings(s)
    bot = {p.name: p for p in build_parts(s, eff, resolve_binaries=False)}["bot"]
    assert bot.mode == "embedded" and bot.argv[-2:] == ["-m", "workers.telegram"] and bot.port == 8089
    secret = (tmp_path / "secrets" / "telegram.secret").read_text().strip()
    assert eff.telegram_callback_secret is not None and eff.telegram_callback_secret.get_secret_value() == secret
    assert bot.env["AGENTIC_TELEGRAM_CALLBACK_SECRET"] == secret  # the worker gets the same env
    off = Settings(data_dir=tmp_path)
    bot = {p.name: p for p in build_parts(off, effective_settings(off), resolve_binaries=False)}["bot"]
    assert bot.mode == "disabled" and "AGENTIC_TELEGRAM_TOKEN" in bot.url
