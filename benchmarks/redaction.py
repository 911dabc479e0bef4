"""Redaction speed and reach: what it costs to redact before a cloud call, and what it finds.

    .venv/bin/python benchmarks/redaction.py [--rounds 5]

Prints, for the 3,945 texts of awesome-prometheus-alerts (`../shared/corpora`: names,
descriptions, comments and queries as alerts carry them):
- throughput (MB/s) and time per text (p50/p95), over `--rounds` passes;
- how many texts it changed (ordinary alert text: should be 0);
and for one planner prompt of the incident loop (`build_messages` for an alert whose labels
and annotations carry a password, a bearer token, an email and a phone number) the time to
redact the messages, what was found, and that nothing planted is left.

Recorded on the 2-core reference machine (2026-11-21, quiet): 3,945 texts (414 kB), 0 changed,
2.3 MB/s, 37 µs / 88 µs per text (p50 / p95); the planner prompt (1,373 characters) in 0.48 ms,
2 secrets, 1 email address and 1 phone number found, nothing planted left.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agentic_core.redaction import Redactor, describe_counts, redact  # noqa: E402
from tests.support.corpora import rule_texts  # noqa: E402  # the texts the no-false-positive test uses

RULES = REPO.parent / "shared" / "corpora" / "awesome-prometheus-alerts" / "rules.yml"

PLANTED = {
    "password": "hunter2-Pa55word!",
    "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVlLTEyMzQ",
    "email": "alice.ops@example.org",
    "phone": "+49 30 1234 5678",
}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def prompt_messages() -> list[dict[str, Any]]:
    from activities.incident.prompt import build_messages
    from agentic_core.incident import ProposeInput, RecallResult

    inp = ProposeInput(
        incident_id="inc-bench",
        title="Sonarr cannot reach its download client",
        labels={"alertname": "SonarrDownloadClientUnavailable", "app": "sonarr", "namespace": "media"},
        annotations={
            "description": (
                f"qbittorrent at http://admin:{PLANTED['password']}@qbit:8080 refused the login; "
                f"Authorization: Bearer {PLANTED['token']}. Owner {PLANTED['email']}, on call {PLANTED['phone']}."
            )
        },
        recall=RecallResult(),
    )
    return build_messages(inp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="passes over the corpus")
    ap.add_argument("--rules", default=str(RULES), help="awesome-prometheus-alerts rules.yml")
    args = ap.parse_args()

    texts = rule_texts(Path(args.rules))
    size = sum(len(t.encode()) for t in texts)
    per_text: list[float] = []
    changed = 0
    started = time.perf_counter()
    for r in range(args.rounds):
        for t in texts:
            t0 = time.perf_counter()
            out = redact(t)
            per_text.append(time.perf_counter() - t0)
            if r == 0 and out.counts:
                changed += 1
    total = time.perf_counter() - started
    print(f"corpus: {len(texts)} texts, {size / 1000:.0f} kB, {args.rounds} rounds")
    print(f"  throughput            {size * args.rounds / total / 1e6:.2f} MB/s")
    print(f"  per text p50 / p95    {pct(per_text, 50) * 1e6:.0f} µs / {pct(per_text, 95) * 1e6:.0f} µs")
    print(f"  texts changed         {changed} (ordinary alert text: should be 0)")

    messages = prompt_messages()
    times: list[float] = []
    for _ in range(200):
        t0 = time.perf_counter()
        redactor = Redactor()
        sent = redactor.redact_messages(messages)
        times.append(time.perf_counter() - t0)
    sent_text = "\n".join(str(m.get("content", "")) for m in sent)
    left = [k for k, v in PLANTED.items() if v in sent_text]
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    print(f"planner prompt: {chars} characters in {len(messages)} messages")
    print(f"  redact p50 / p95      {statistics.median(times) * 1e3:.2f} ms / {pct(times, 95) * 1e3:.2f} ms")
    print(f"  found                 {describe_counts(redactor.counts)}")
    print(f"  planted values left   {left or 'none'}")
    return 1 if left or changed else 0


if __name__ == "__main__":
    sys.exit(main())
