"""The rollout's wave 8 check of the deployed gateway (`gateway_authenticates`, docs/gateway.md):
authentication and routing, without a key of its own.

- `GET /healthz` answers 200 (the gateway is up and the Service or Ingress routes to it);
- every other route answers 401 without a key and with a made-up key, and the 401 is the
  gateway's own (its OpenAI-style error object with `invalid_api_key`, `WWW-Authenticate: Bearer`),
  so the path was routed to the gateway and not answered by a proxy;
- a path that is no route is refused the same way (nothing to learn without a key);
- `/console/` answers 401 with the sign-in form.
"""

from __future__ import annotations

import httpx
from temporalio import activity

from agentic_core.rollout import CheckInput, CheckResult

BOGUS_KEY = "agk_000000000000_" + "x" * 43
ROUTES = (
    ("GET", "/v1/models"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/runs/agent-rollout-probe"),
    ("POST", "/v1/runs/agent-rollout-probe/approve"),
    ("POST", "/v1/incidents/inc-rollout-probe/decision"),
    ("GET", "/v1/no-such-route"),
)


async def probe_gateway(http: httpx.AsyncClient, url: str, timeout_s: float = 30.0) -> tuple[bool, str]:
    """(passed, what was seen) for the gateway at `url`."""
    base = url.rstrip("/")
    timeout = httpx.Timeout(timeout_s, connect=10.0)
    problems: list[str] = []
    try:
        r = await http.get(f"{base}/healthz", timeout=timeout)
        if r.status_code != 200:
            problems.append(f"GET /healthz: {r.status_code}")
        for method, path in ROUTES:
            for headers in ({}, {"Authorization": f"Bearer {BOGUS_KEY}"}):
                r = await http.request(method, f"{base}{path}", headers=headers, json={}, timeout=timeout)
                code = _error_code(r)
                if r.status_code != 401 or code != "invalid_api_key" or r.headers.get("www-authenticate") != "Bearer":
                    who = "a made-up key" if headers else "no key"
                    problems.append(f"{method} {path} with {who}: {r.status_code} {code or r.text[:80]!r}")
        r = await http.get(f"{base}/console/", timeout=timeout)
        if r.status_code != 401 or 'name="key"' not in r.text:
            problems.append(f"GET /console/ without a session: {r.status_code}, not the sign-in form")
    except httpx.HTTPError as exc:
        return False, f"{base}: {type(exc).__name__}: {exc}"
    if problems:
        return False, "; ".join(problems)[:1000]
    return True, f"{base}: /healthz 200; {len(ROUTES)} routes refuse no key and a made-up key (401); console sign-in"


def _error_code(r: httpx.Response) -> str | None:
    try:
        err = r.json().get("error")
    except ValueError:
        return None
    return err.get("code") if isinstance(err, dict) else None


@activity.defn(name="rollout.check_gateway")
async def check_gateway(inp: CheckInput) -> CheckResult:
    """Wave 8: the deployed gateway (`url`) refuses every route without a valid key, and routes reach it."""
    p = inp.check.params
    async with httpx.AsyncClient() as http:
        passed, detail = await probe_gateway(
            http, str(p.get("url", "http://gateway.ai-agents.svc:8087")), float(p.get("timeout_s", 30))
        )
    return CheckResult(name=inp.check.name, passed=passed, detail=detail)
