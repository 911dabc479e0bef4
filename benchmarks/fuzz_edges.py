"""Bad input at scale: property-based fuzzing of every inbound edge (#17).

    .venv/bin/python benchmarks/fuzz_edges.py [--requests 10000] [--seed 0] [--edge intake|telegram|gateway]

Starts the real pieces once (tests/support/fuzz_edges.py): the Temporal dev server, PostgreSQL with
the ledger, and over real HTTP (uvicorn with the production read limits) the intake (`POST /alerts`,
`POST /events`), the Telegram bot's webhook (`POST /telegram` with its secret_token header, the bot
talking to the Bot API emulator) and the gateway (`/v1/chat/completions`, `/v1/models`, `/v1/runs/*`,
`/v1/incidents/*/decision`, the console's login and decision forms). Stand-in workflows under the
real names take what a 2xx starts. Hypothesis then generates `--requests` requests per edge (no
shrinking: every failure is kept and counted): near-valid ones (a valid document with fields
mutated: wrong types, huge and odd unicode strings, missing and extra keys, deep nesting; wrong
content types, bad auth headers, truncated JSON, NaN, invalid UTF-8, oversized bodies) and garbage
(any method, odd paths, random bytes and headers).

Prints, per edge: requests, the status-code histogram, 5xx, crashes (a dropped connection, or the
server not answering /healthz afterwards), 4xx without a JSON error message, unhandled errors logged,
half-processed incidents (a workflow Temporal holds that no 2xx named, or a 2xx whose workflow is
missing: accepted vs started), requests/s; then the first failures of each kind. Exits 1 on any.

Recorded on the 2-core reference machine (2026-12-06, `--seed 0`, shared with other agents' work, so
requests/s are low bounds): 10,000 requests per edge, 0 5xx, 0 crashes, 0 unclear 4xx, 0 errors logged,
0 half-processed on all three.
- intake: 4,887 accepted (2xx; 4,839 of them 202), 111 distinct incidents named and 111 workflows in
  Temporal; 400 883, 401 774, 404 523, 405 380, 413 153, 415 521, 422 1,879; 42.9 requests/s.
- telegram: 200 5,613, 400 2,450, 403 830, 404 644, 405 310, 413 153; no workflow; 85.5 requests/s.
- gateway: 2,582 200 and 123 303, 1,917 agent runs named and 1,917 in Temporal; 400 1,825, 401 1,225,
  403 237, 404 3,899, 413 109; 49.2 requests/s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.fuzz_edges import EDGES, Edges, run_edge  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="generated requests per edge (10000)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (0); the same seed, the same requests")
    parser.add_argument("--edge", choices=EDGES, action="append", help="only this edge (repeatable); default all")
    parser.add_argument("--show", type=int, default=3, help="failures shown per kind and edge (3)")
    args = parser.parse_args()
    edges = args.edge or list(EDGES)
    with Edges(progress_every=1000) as e:
        for edge in edges:
            print(f"fuzzing {edge}: {args.requests} requests ...", file=sys.stderr, flush=True)
            run_edge(e, edge, args.requests, seed=args.seed, derandomize=False)
        reports = e.finish()
    failed = False
    print(
        f"{'edge':<10}{'requests':>9}{'5xx':>6}{'crashes':>9}{'unclear':>9}{'errors':>8}"
        f"{'half':>6}{'accepted':>10}{'started':>9}{'req/s':>8}  statuses"
    )
    for edge in edges:
        s = reports[edge].summary()
        print(
            f"{edge:<10}{s['requests']:>9}{s['5xx']:>6}{s['crashes']:>9}{s['unclear_4xx']:>9}"
            f"{s['logged_errors']:>8}{s['half_processed']:>6}{s['accepted_workflows']:>10}"
            f"{s['started_workflows']:>9}{s['requests_per_s']:>8}  {json.dumps(s['statuses'])}"
        )
    for edge in edges:
        r = reports[edge]
        for kind in ("server_errors", "crashes", "unclear", "logged_errors", "half_processed"):
            found: list[str] = getattr(r, kind)
            if found:
                failed = True
                print(f"\n{edge}: {len(found)} {kind}; the first {min(args.show, len(found))}:")
                for line in found[: args.show]:
                    print("  " + line[:1500])
    print("\nunclear: a 4xx without a JSON error message; errors: unhandled errors logged; half: half-processed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
