"""Property-based fuzzing of every inbound edge, the CI slice of benchmarks/fuzz_edges.py (#17, "bad
input at scale"): the intake (`/alerts`, `/events`), the Telegram bot's webhook and the gateway, each
served over real HTTP by uvicorn with the production limits, on the real Temporal dev server and
PostgreSQL (tests/support/fuzz_edges.py). Hypothesis runs derandomized (the same requests every
time) with a modest count per edge; the properties: never a 5xx, no dropped connection, every 4xx a
JSON error with a message, no unhandled error logged, every server still answers `/healthz`, and
every workflow Temporal holds was named by a 2xx (none started by a refused request).

The regressions below are the defects the fuzzing found, each as the request that showed it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fuzz_edges import BOT_CHAT, EDGES, WEBHOOK_SECRET, Edges, Req, run_edge
from workers.gateway.console import COOKIE
from workers.telegram.bot import SECRET_HEADER, WEBHOOK_PATH
from workers.telegram.notifier import CHANNEL

EXAMPLES = 250  # per edge; the benchmark sends 10,000


@pytest.fixture(scope="module")
def edges() -> Iterator[Edges]:
    with Edges() as e:
        yield e


def _assert_clean(edges: Edges, edge: str) -> None:
    report = edges.finish()[edge]
    summary = report.summary()
    assert report.requests >= EXAMPLES // 2, summary
    assert not report.failures, (summary, report.failures[:5])


@pytest.mark.parametrize("edge", EDGES)
def test_fuzzing_an_edge_finds_no_5xx_crash_or_half_processed_incident(edges: Edges, edge: str) -> None:
    report = run_edge(edges, edge, EXAMPLES)
    _assert_clean(edges, edge)
    assert any(200 <= s < 300 for s in report.statuses), f"no request was accepted: {report.summary()}"
    assert any(400 <= s < 500 for s in report.statuses), f"no request was refused: {report.summary()}"
    if edge != "telegram":  # a 2xx there starts a workflow: each is in Temporal, and nothing else is
        assert report.accepted and report.started == len(report.accepted), report.summary()


# --------------------------------------------------------------------------- the defects found


def _bot(body: bytes, *, method: str = "POST", path: str = WEBHOOK_PATH) -> Req:
    headers = ((SECRET_HEADER.lower(), WEBHOOK_SECRET.encode()), ("content-type", b"application/json"))
    return Req("telegram", method, path, headers, body)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        # Update.de_json on anything but an object: AttributeError, a 500
        (b'"just a string"', "a JSON object, not str"),
        (b"[1, 2]", "a JSON object, not list"),
        (b"17", "a JSON object, not int"),
        (b"null", "a JSON object, not NoneType"),
        (b'{"update_id": 1, "message": []}', "message"),
        (b'{"update_id": 1, "callback_query": "x"}', "callback_query"),
    ],
)
def test_the_bot_webhook_refuses_a_body_that_is_not_an_update_with_a_400(edges: Edges, body: bytes, says: str) -> None:
    """Was a 500 (python-telegram-bot's `Update.de_json` trusts its input)."""
    req = _bot(body)
    r = edges.http.post(edges.base["telegram"] + req.path, headers=req.raw_headers(), content=req.body)
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]


def test_the_bot_webhook_refuses_an_update_its_handlers_cannot_read(edges: Edges) -> None:
    """Was a 200, then `telegram handler failed: unhashable type: 'list'` in the log: a chat id that
    is a list went through to the handlers. Now a 400 naming the field, and nothing logged."""
    user = {"id": 111, "is_bot": False, "first_name": "Alice"}
    update = {
        "update_id": 5,
        "message": {"message_id": 7, "date": 1, "chat": {"id": [1], "type": "group"}, "from": user, "text": "/status"},
    }
    before = len(edges.reports["telegram"].logged_errors)
    status = edges.fire(_bot(json.dumps(update).encode()))
    assert status == 400
    r = edges.http.post(
        edges.base["telegram"] + WEBHOOK_PATH,
        headers={SECRET_HEADER: WEBHOOK_SECRET, "content-type": "application/json"},
        content=json.dumps(update).encode(),
    )
    assert "message.chat.id" in r.json()["error"]
    edges.finish()
    assert len(edges.reports["telegram"].logged_errors) == before


def test_the_bot_webhook_refuses_an_oversized_body_with_a_413(edges: Edges) -> None:
    """Was read whole into memory, whatever its size, and a valid update padded to megabytes a 200."""
    update = {"update_id": 6, "padding": "x" * (2 * 1_048_576)}
    r = edges.http.post(
        edges.base["telegram"] + WEBHOOK_PATH,
        headers={SECRET_HEADER: WEBHOOK_SECRET, "content-type": "application/json"},
        content=json.dumps(update).encode(),
    )
    assert r.status_code == 413, r.text
    assert "over the limit" in r.json()["error"]


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/", 404), ("GET", WEBHOOK_PATH, 405)])
def test_the_bot_answers_an_unknown_route_or_method_with_a_json_error(
    edges: Edges, method: str, path: str, status: int
) -> None:
    """Was Starlette's plain-text `Not Found` / `Method Not Allowed`."""
    r = edges.http.request(method, edges.base["telegram"] + path)
    assert r.status_code == status
    assert r.json()["error"]


def test_a_press_whose_callback_id_holds_a_nul_is_still_recorded(edges: Edges) -> None:
    """Was `refusal not recorded in the ledger: invalid byte sequence for encoding "UTF8": 0x00`
    (PostgreSQL text cannot hold a NUL): the refusal's audit row was lost."""
    user = {"id": 111, "is_bot": False, "first_name": "Alice"}
    chat = {"id": BOT_CHAT, "type": "supergroup", "title": "ops", "is_forum": True}
    bot = {"id": 1, "is_bot": True, "first_name": "bot"}
    message = {"message_id": 7, "date": 1760000000, "chat": chat, "from": bot, "text": "card"}
    update = {
        "update_id": 8,
        "callback_query": {
            "id": "\u00fd\u0000x",
            "from": user,
            "chat_instance": "1",
            "message": message,
            "data": "d:x:y",
        },
    }
    before = len(edges.reports["telegram"].logged_errors)
    assert edges.fire(_bot(json.dumps(update).encode())) == 200

    async def recorded() -> bool:
        for _ in range(200):
            if await edges.ledger.find_notification(CHANNEL, str(BOT_CHAT), "refused:\u00fd\ufffdx"):
                return True
            await asyncio.sleep(0.05)
        return False

    assert edges.call(recorded()), "the refusal is not in the ledger"
    edges.finish()
    assert edges.reports["telegram"].logged_errors[before:] == []


def test_non_ascii_in_a_console_cookie_or_csrf_field_is_refused_not_a_503(edges: Edges) -> None:
    """Was a 503: `hmac.compare_digest` raises TypeError on a str with non-ASCII characters (the
    session cookie's signature, the form's CSRF token)."""
    base = edges.base["gateway"]
    with httpx.Client(timeout=30) as http:
        r = http.get(base + "/console/", headers={b"cookie": f"{COOKIE}=eA.\u00e9".encode("latin-1")})
        assert r.status_code == 401 and "<form" in r.text, r.text[:300]
        login = http.post(base + "/console/login", data={"key": edges.secrets["gateway"]})
        assert login.status_code == 303, login.text[:300]
        r = http.post(base + "/console/incidents/x/decide", data={"csrf": "\u00e9", "choice": "approved"})
        assert r.status_code == 403, r.text[:300]
        assert "CSRF" in r.text


def test_a_chat_completion_whose_json_nests_too_deeply_is_a_400(edges: Edges) -> None:
    """Was a 503 ("the gateway failed unexpectedly"): json.loads' RecursionError was not caught."""
    r = edges.http.post(
        edges.base["gateway"] + "/v1/chat/completions",
        headers={"authorization": f"Bearer {edges.secrets['gateway']}", "content-type": "application/json"},
        content=b"[" * 100_000 + b"]" * 100_000,
    )
    assert r.status_code == 400, r.text
    assert "nests too deeply" in r.json()["error"]["message"]


def test_a_console_login_that_says_multipart_but_is_not_is_a_400(edges: Edges) -> None:
    """Was a 503 ("the console failed unexpectedly"): the multipart parser's error was not caught."""
    r = edges.http.post(
        edges.base["gateway"] + "/console/login",
        headers={"content-type": "multipart/form-data; boundary=x"},
        content=b"key=agk_x&csrf=x",
    )
    assert r.status_code == 400, r.text
    assert "the form cannot be read" in r.text
    r = edges.http.post(
        edges.base["gateway"] + "/console/login",
        headers={"content-type": "multipart/form-data"},  # no boundary at all
        content=b"--x--",
    )
    assert r.status_code == 400, r.text
