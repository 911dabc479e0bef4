"""The alert intake: Alertmanager (and other detectors) in, one IncidentWorkflow per alert group out.

    AGENTIC_INTAKE_TOKEN=... python -m workers.intake

Routes (every answer is JSON):

- `POST /alerts`: an Alertmanager webhook (version 4). One webhook is one alert group, so one
  signal-with-start of `IncidentWorkflow` (id = `AlertGroup.incident_id`, signal `alerts`).
  202 `{"accepted": true, "incidents": [id], "alerts": N}`.
- `POST /events`: a generic event (`GenericEvent`) or a list of up to 100; each is its own
  group. 202 `{"accepted": true, "incidents": [ids], "events": N}`.
- `GET /healthz` (no auth): 200 when Temporal answers its health check (cached a few
  seconds), else 503.
- `GET /`: what this is and which routes it has.

Status codes, checked in this order; nothing reaches Temporal unless the whole payload is
valid, so a bad request never leaves a half-processed incident:

    401  no bearer token, or the wrong one (constant-time compare; `WWW-Authenticate: Bearer`)
    415  Content-Type is not JSON (`application/json` or `application/*+json`)
    413  body larger than AGENTIC_INTAKE_MAX_BODY: by Content-Length, or counted while reading
    408  headers not complete within 5 s, or the body within 10 s of them; the connection is
         closed (workers/http_limits.py). Content-Length with Transfer-Encoding: 400, closed
    400  Content-Length not a number, body not JSON, or JSON of the wrong kind
         (`/alerts` needs an object; `/events` an object or a list)
    422  schema violation; the message names every failing field, e.g.
         `alerts[0].fingerprint: field required`; text or a time no store can hold (a lone
         surrogate, a NUL, a time outside years 1-9999 in UTC) is one too
         (`agentic_core.alerts.Text`, `Timestamp`)
    503  Temporal unreachable or failing (with `Retry-After`, so Alertmanager retries). This
         is the only 5xx: an unexpected error also answers 503 (logged with its traceback),
         never 500, because a retry is always safe (see below).

Secrets: before a group goes anywhere, the secrets in its texts (label and annotation values,
the group key, the URLs; an event's title, description, labels and annotations with them) are
replaced by `[SECRET_n]` placeholders (`agentic_core.alerts.redact_group`), so the workflow
input, Temporal's history, the ledger, Telegram and the CLI never hold them. The incident id
and fingerprints come from the raw values. AGENTIC_INTAKE_KEEP_SECRETS=true keeps them.

How a group reaches its incident:

- firing (or mixed): `start_workflow(..., start_signal=...)`, i.e. signal-with-start. If the
  incident runs, only the signal is delivered; otherwise a run starts with the signal as
  its first event. Repeats and retries of a group are therefore just more signals to the
  same incident, and a request that timed out and is retried at worst delivers a signal
  twice (delivery is at least once; the workflow treats a repeat as a repeat). A new run
  starts with its search attributes set (`IncidentStatus=open`, the alert's name, severity
  and category, by the triage stage's own rules), so listings show it whole at once; a
  namespace that does not define them gets runs without them, and one warning.
- an incident that already closed (resolved, expired, ignored) and fires again: the id
  reuse policy is ALLOW_DUPLICATE, so signal-with-start starts a **new run under the same
  workflow id**: a new incident for the same group, with the old run's history kept.
- `status: resolved` (every alert of the group resolved): a plain signal to the running
  incident, never a start: a resolution must not open an incident to ask a human about a
  problem that is already gone. With no incident running (it closed, or never existed) the
  request is still a 202 and the answer lists the group under `ignored`.

Process: `python -m workers.intake` starts like every platform process
(`workers.process.run_service`): the settings from the environment (AGENTIC_*), completed like
every part of `agentic up` gets them (the token in DATA_DIR/secrets when none is set). It
refuses to start without AGENTIC_INTAKE_TOKEN, listens on AGENTIC_HOST:AGENTIC_INTAKE_PORT
and talks to Temporal at AGENTIC_TEMPORAL_ADDRESS (default: the embedded one) on
AGENTIC_TASK_QUEUE. It starts even when Temporal is down: `/healthz` and the POST routes
answer 503 until Temporal is reachable, then it carries on without a restart (a supervisor
or Alertmanager sees a clear 503, not a crash loop). Start-up problems (bad settings, no
token, port in use) give one `error:` line on stderr and exit code 2. SIGTERM or SIGINT
stops accepting connections, lets requests in flight finish, and exits 0.

Logging: one access line per request (client, method, path without the query string,
status, duration) and one line per delivered group (incident id, status, alert count, how
many secrets were redacted).
Headers, the token and payload contents (labels, annotations) are never logged.
"""

from workers.intake.app import MAX_EVENTS, create_app
from workers.intake.delivery import ClientFactory, Intake, incident_config
from workers.intake.process import main, serve

__all__ = ["MAX_EVENTS", "ClientFactory", "Intake", "create_app", "incident_config", "main", "serve"]
