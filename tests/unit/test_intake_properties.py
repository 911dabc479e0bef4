"""A property of the intake: whatever arrives, the answer is a 4xx with a JSON `error`, or a 202
that delivered something every store downstream can hold. Never a 5xx, except the 503 that
says "Temporal is down, retry later".

Payloads mix valid Alertmanager webhooks and generic events with mutations: odd Unicode (lone
surrogates, NUL, RTL marks, non-BMP characters), huge strings, odd timestamps, wrong types,
missing fields, nested junk, broken bodies. The app runs in process against a fake Temporal
client (`FakeTemporal`) that takes what the intake sends through the pydantic data converter,
as a real client would, and keeps it; each 202 is then checked the way the ledger would
(PostgreSQL text and jsonb: no NUL, valid UTF-8; timestamptz: an aware time within years 1 to
9999 in UTC). The same request against the app with its Temporal client factory down must get
that app's answer: the same 4xx, or a 503 with Retry-After where the first got a 202.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from agentic_core.alerts import AlertGroup
from agentic_core.incident import SIGNAL_ALERTS, AlertsSignal, IncidentInput
from workers.intake import create_app
from workers.settings import Settings
from workflows.incident import IncidentWorkflow

TOKEN = "property-token"
MAX_BODY = 262_144
CONVERTER = pydantic_data_converter.payload_converter


# --------------------------------------------------------------------------- a fake Temporal client


class FakeTemporal:
    """What `Intake.deliver` calls on a Temporal client, with every argument put through the
    pydantic data converter as the real client does, and the decoded results kept."""

    def __init__(self) -> None:
        self.inputs: list[IncidentInput] = []
        self.signals: list[tuple[str, AlertsSignal]] = []
        self.service_client = SimpleNamespace(config=SimpleNamespace(target_host="fake:7233"))

    @staticmethod
    def _round_trip(value: Any, kind: type) -> Any:
        payloads = CONVERTER.to_payloads([value])  # raises on what cannot be serialised
        [back] = CONVERTER.from_payloads(payloads, [kind])
        assert back == value, "the data converter changed the value"
        return back

    async def start_workflow(self, workflow: Any, arg: IncidentInput, **kw: Any) -> Any:
        assert workflow == IncidentWorkflow.run and kw["id"] == arg.incident_id
        assert kw["start_signal"] == SIGNAL_ALERTS
        self.inputs.append(self._round_trip(arg, IncidentInput))
        [sig] = kw["start_signal_args"]
        self.signals.append((arg.incident_id, self._round_trip(sig, AlertsSignal)))
        CONVERTER.to_payloads([kw["static_summary"]])
        return SimpleNamespace(result_run_id="run-1")

    def get_workflow_handle(self, workflow_id: str) -> Any:
        async def signal(name: str, arg: AlertsSignal) -> None:
            assert name == SIGNAL_ALERTS
            self.signals.append((workflow_id, self._round_trip(arg, AlertsSignal)))

        return SimpleNamespace(signal=signal)


def ledger_would_store(group: AlertGroup) -> None:
    """What PostgreSQL (through asyncpg) refuses: NUL in text or jsonb, text that is not UTF-8,
    a timestamp it cannot place in UTC; an empty fingerprint (a CHECK)."""
    texts = [group.incident_id, group.receiver, group.group_key, group.external_url, group.source]
    for d in (group.group_labels, group.common_labels, group.common_annotations):
        texts += [*d, *d.values()]
    for a in group.alerts:
        texts += [a.fingerprint, a.generator_url, a.source, *a.labels, *a.labels.values()]
        texts += [*a.annotations, *a.annotations.values()]
        assert a.fingerprint
        for t in (a.starts_at, a.ends_at):
            if t is not None:
                assert t.tzinfo is not None and t.utcoffset() is not None
                assert 1 <= t.astimezone(UTC).year <= 9999
    for t in texts:
        assert "\x00" not in t
        t.encode("utf-8")  # no lone surrogate
    assert group.alerts


def no_planted_secret(group: AlertGroup) -> None:
    """`password=hunter2` (one of the odd texts) is redacted wherever it lands in a value."""
    values = [group.group_key, group.external_url]
    for d in (group.group_labels, group.common_labels, group.common_annotations):
        values += d.values()
    for a in group.alerts:
        values += [a.generator_url, *a.labels.values(), *a.annotations.values()]
    for v in values:
        assert "hunter2" not in v, v


# --------------------------------------------------------------------------- strategies

ODD = [
    "\ud800",
    "\udfff",
    "\ud83d",
    "\x00",
    "\ud83d\ude00",
    "💥",
    "\U0010ffff",
    "\u202e",
    "\ufeff",
    "\uffff",
    "\u0085",
    "\r\n",
    "\\",
    '"',
    "{{ $labels.pod }}",
    "token: send",
    "password=hunter2",
]
_char = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from(ODD))
_odd_text = st.one_of(
    st.lists(_char, max_size=12).map("".join),
    st.sampled_from(ODD),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "💥", "\x00", "\ud800"]), st.integers(1000, 300_000)),
)
_plain = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=12)
_nice = st.one_of(_plain, st.text(max_size=20))  # ordinary and unusual (but valid) Unicode
TIMES = [
    "2026-11-21T14:02:11.312Z",
    "2026-11-21T14:02:11",
    "2026-11-21T14:02:11.123456789Z",
    "2026-11-21 14:02:11Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59+14:00",
    "1970-01-01T00:00:00+23:59",
    "2026-11-21T14:02:11+24:00",
    "2026-02-30T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "+10000-01-01T00:00:00Z",
    "",
    "now",
]
_time = st.one_of(
    st.sampled_from(TIMES),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(datetime.isoformat),
    st.integers(min_value=-(10**14), max_value=10**14),
    st.floats(allow_nan=False, allow_infinity=False),
)
_junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _odd_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_nice, inner, max_size=3)),
    max_leaves=8,
)
_labels = st.dictionaries(_nice, _nice, min_size=1, max_size=4).map(lambda d: {"alertname": "Demo", **d})


def _alert(status: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "status": st.just(status),
            "labels": _labels,
            "annotations": st.dictionaries(_nice, _nice, max_size=3),
            "startsAt": st.sampled_from(TIMES[:3]),
            "endsAt": st.sampled_from(["0001-01-01T00:00:00Z", "2026-11-21T15:00:00Z"]),
            "generatorURL": _nice,
            "fingerprint": st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
        }
    )


_webhook = st.sampled_from(["firing", "resolved"]).flatmap(
    lambda status: st.fixed_dictionaries(
        {
            "version": st.just("4"),
            "groupKey": _nice.map(lambda s: f"{{}}:{{alertname={s!r}}}"),
            "truncatedAlerts": st.integers(0, 3),
            "status": st.just(status),
            "receiver": _plain,
            "groupLabels": st.dictionaries(_nice, _nice, max_size=2),
            "commonLabels": st.dictionaries(_nice, _nice, max_size=3),
            "commonAnnotations": st.dictionaries(_nice, _nice, max_size=2),
            "externalURL": _nice,
            "alerts": st.lists(_alert(status), min_size=1, max_size=3),
        }
    )
)
_event = st.fixed_dictionaries(
    {"source": _plain, "title": _nice.filter(bool)},
    optional={
        "status": st.sampled_from(["firing", "resolved"]),
        "severity": _plain,
        "description": _nice,
        "labels": st.dictionaries(_nice, _nice, max_size=3),
        "annotations": st.dictionaries(_nice, _nice, max_size=3),
        "group": _nice,
        "fingerprint": _plain,
        "url": _nice,
        "occurred_at": st.sampled_from(TIMES[:3]),
    },
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> Any:
    """A valid document with 0 to 3 mutations: a value replaced by odd text, an odd time or junk,
    a key removed, a key added."""
    doc = copy.deepcopy(draw(base))
    for _ in range(draw(st.integers(0, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        how = draw(st.sampled_from(["text", "time", "junk", "delete", "add"]))
        if how == "delete":
            del parent[key]
        elif how == "add" and isinstance(parent, dict):
            parent[draw(_odd_text)] = draw(_junk)
        else:
            parent[key] = draw({"text": _odd_text, "time": _time, "junk": _junk, "add": _odd_text}[how])
    return doc


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """(path, body, content type)."""
    route = draw(st.sampled_from(["/alerts", "/alerts", "/events", "/events-list"]))
    if route == "/alerts":
        path, doc = route, draw(mutated(_webhook))
    elif route == "/events":
        path, doc = route, draw(mutated(_event))
    else:
        path, doc = "/events", draw(mutated(st.lists(_event, min_size=1, max_size=4)))
    body = json.dumps(doc).encode()  # lone surrogates and NUL become JSON escapes
    how = draw(st.sampled_from(["as is"] * 8 + ["cut", "bytes", "nan", "type"]))
    content_type = "application/json"
    if how == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif how == "bytes":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    elif how == "nan":
        body = b'{"version": "4", "truncatedAlerts": NaN}'
    elif how == "type":
        content_type = draw(st.sampled_from(["text/plain", "", "application/x-www-form-urlencoded"]))
    return path, body, content_type


# --------------------------------------------------------------------------- the property


def _settings() -> Settings:
    return Settings(intake_token=SecretStr(TOKEN), intake_max_body=MAX_BODY, task_queue="property")  # type: ignore[call-arg]


async def _down() -> Client:
    raise ConnectionRefusedError("Temporal is down (the test says so)")


async def _send(path: str, body: bytes, content_type: str) -> tuple[httpx.Response, FakeTemporal, httpx.Response]:
    fake = FakeTemporal()

    async def up() -> Client:
        return fake  # type: ignore[return-value]

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    answers = []
    for factory in (up, _down):
        app = create_app(factory, _settings())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
            answers.append(await http.post(path, content=body, headers=headers))
    return answers[0], fake, answers[1]


def _check(r: httpx.Response, fake: FakeTemporal, down: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code != 202:
        assert 400 <= r.status_code < 500, r.text
        body = r.json()
        assert body["accepted"] is False and isinstance(body["error"], str) and body["error"], body
        assert not fake.inputs and not fake.signals  # refused: nothing reached Temporal
        assert (down.status_code, down.json()) == (r.status_code, body)  # validation comes first
        return
    body = r.json()
    assert body["accepted"] is True
    delivered = {i for i, _s in fake.signals}
    assert delivered and set(body["incidents"]) == delivered
    for group in [inp.group for inp in fake.inputs] + [sig.group for _i, sig in fake.signals]:
        ledger_would_store(group)
        no_planted_secret(group)
    assert down.status_code == 503 and down.headers["retry-after"] and down.json()["error"]


def test_any_payload_gets_a_4xx_or_a_deliverable_202() -> None:
    seen: Counter[int] = Counter()
    loop = asyncio.new_event_loop()

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(requests())
    def run(request: tuple[str, bytes, str]) -> None:
        r, fake, down = loop.run_until_complete(_send(*request))
        seen[r.status_code] += 1
        _check(r, fake, down)

    try:
        run()
    finally:
        loop.close()
    # The strategy reaches both sides: accepted payloads and each kind of refusal.
    assert seen[202] >= 40 and seen[422] >= 40 and seen[400] >= 5, seen
