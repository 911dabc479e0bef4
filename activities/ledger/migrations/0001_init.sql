-- 0001_init: the ledger's first schema.
--
-- Incidents are keyed by their Temporal workflow id. Every table that belongs to an incident
-- references it; the repository inserts a stub incident row (ON CONFLICT DO NOTHING) in the
-- same transaction as any child row, so rows may arrive in any order and the foreign keys
-- still hold. Runbook trust (level, stats, level history) lives here, not in the runbook files.

CREATE TABLE incidents (
    id          text PRIMARY KEY,
    group_key   text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'triaging', 'awaiting_approval', 'executing', 'verifying',
                                  'resolved', 'failed', 'ignored', 'expired', 'closed')),
    severity    text NOT NULL DEFAULT '',
    category    text NOT NULL DEFAULT '',
    title       text NOT NULL DEFAULT '',
    opened_at   timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz,
    CHECK (closed_at IS NULL OR closed_at >= opened_at)
);
CREATE INDEX incidents_opened_at_idx ON incidents (opened_at DESC);
CREATE INDEX incidents_status_opened_at_idx ON incidents (status, opened_at DESC);
CREATE INDEX incidents_group_key_idx ON incidents (group_key);

CREATE TABLE alerts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint  text NOT NULL CHECK (fingerprint <> ''),
    labels       jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
    annotations  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(annotations) = 'object'),
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz,
    status       text NOT NULL CHECK (status IN ('firing', 'resolved')),
    received_at  timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    incident_id  text REFERENCES incidents (id) ON DELETE SET NULL,
    -- Alertmanager re-sends the same alert (same fingerprint, same start) until it resolves.
    UNIQUE (fingerprint, starts_at)
);
CREATE INDEX alerts_incident_id_idx ON alerts (incident_id);
CREATE INDEX alerts_received_at_idx ON alerts (received_at DESC);

CREATE TABLE proposals (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  text NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    model        text NOT NULL DEFAULT '',
    source       text NOT NULL DEFAULT 'llm',
    summary      text NOT NULL DEFAULT '',
    diagnosis    text NOT NULL DEFAULT '',
    runbook_id   text,  -- no FK: a model may name a runbook that does not exist; the guard decides
    actions      jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(actions) = 'array'),
    confidence   double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    risk         text NOT NULL DEFAULT 'medium' CHECK (risk IN ('low', 'medium', 'high')),
    fallback     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX proposals_incident_id_idx ON proposals (incident_id, created_at);
CREATE INDEX proposals_runbook_id_idx ON proposals (runbook_id) WHERE runbook_id IS NOT NULL;

CREATE TABLE decisions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  text REFERENCES incidents (id) ON DELETE CASCADE,
    proposal_id  bigint REFERENCES proposals (id) ON DELETE SET NULL,
    approval_id  text UNIQUE,  -- an approval is answered once
    runbook_id   text,
    choice       text NOT NULL CHECK (choice IN ('approved', 'ignored', 'modified', 'expired', 'automatic')),
    decided_by   text,
    plan_hash    text,
    arguments    jsonb,
    decided_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_incident_id_idx ON decisions (incident_id);
CREATE INDEX decisions_runbook_id_idx ON decisions (runbook_id, decided_at) WHERE runbook_id IS NOT NULL;
CREATE INDEX decisions_decided_at_idx ON decisions (decided_at);

CREATE TABLE actions (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id      text NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    action_index     integer NOT NULL CHECK (action_index >= 0),
    tool             text NOT NULL CHECK (tool <> ''),
    arguments        jsonb NOT NULL DEFAULT '{}'::jsonb,
    idempotency_key  text NOT NULL UNIQUE CHECK (idempotency_key <> ''),
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'succeeded', 'failed', 'refused', 'skipped')),
    result           jsonb,
    error            text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX actions_incident_id_idx ON actions (incident_id, action_index);
CREATE INDEX actions_started_at_idx ON actions (started_at);

CREATE TABLE outcomes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  text NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    result       text NOT NULL CHECK (result IN ('success', 'failure', 'unknown')),
    detail       text NOT NULL DEFAULT '',
    verified_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outcomes_incident_id_idx ON outcomes (incident_id, verified_at);
CREATE INDEX outcomes_verified_at_idx ON outcomes (verified_at);

CREATE TABLE notifications (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  text REFERENCES incidents (id) ON DELETE CASCADE,  -- null for digests and reviews
    channel      text NOT NULL CHECK (channel <> ''),
    target       text NOT NULL DEFAULT '',  -- chat id, address, ...
    thread       text,                      -- forum topic / thread id
    message_id   text,
    kind         text NOT NULL DEFAULT '',
    text         text NOT NULL DEFAULT '',
    sent_at      timestamptz NOT NULL DEFAULT now(),
    edited_at    timestamptz,
    UNIQUE (channel, target, message_id)
);
CREATE INDEX notifications_incident_id_idx ON notifications (incident_id);
CREATE INDEX notifications_sent_at_idx ON notifications (sent_at);

CREATE TABLE runbooks (
    id                text PRIMARY KEY CHECK (id <> ''),
    title             text NOT NULL,
    body              text NOT NULL DEFAULT '',
    source            text NOT NULL DEFAULT '',
    match             jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(match) = 'array'),
    actions           jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(actions) = 'array'),
    automation_level  text NOT NULL DEFAULT 'manual'
                      CHECK (automation_level IN ('manual', 'prompted', 'standard')),
    content_hash      text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runbooks_automation_level_idx ON runbooks (automation_level);

CREATE TABLE runbook_stats (
    runbook_id           text PRIMARY KEY REFERENCES runbooks (id) ON DELETE CASCADE,
    executions           integer NOT NULL DEFAULT 0 CHECK (executions >= 0),
    successes            integer NOT NULL DEFAULT 0 CHECK (successes >= 0),
    failures             integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    approvals            integer NOT NULL DEFAULT 0 CHECK (approvals >= 0),
    ignores              integer NOT NULL DEFAULT 0 CHECK (ignores >= 0),
    modifications        integer NOT NULL DEFAULT 0 CHECK (modifications >= 0),
    expirations          integer NOT NULL DEFAULT 0 CHECK (expirations >= 0),
    automatic_decisions  integer NOT NULL DEFAULT 0 CHECK (automatic_decisions >= 0),
    last_executed_at     timestamptz,
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    CHECK (successes + failures <= executions)
);

-- Each counted event may carry a key; a key is counted once (activity retries are safe).
CREATE TABLE runbook_stat_events (
    event_key   text PRIMARY KEY,
    runbook_id  text NOT NULL REFERENCES runbooks (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runbook_stat_events_runbook_id_idx ON runbook_stat_events (runbook_id);

-- The audit trail of levels: no FK, so it outlives a deleted runbook.
CREATE TABLE runbook_level_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runbook_id  text NOT NULL,
    from_level  text CHECK (from_level IN ('manual', 'prompted', 'standard')),  -- null: created
    to_level    text NOT NULL CHECK (to_level IN ('manual', 'prompted', 'standard')),
    reason      text NOT NULL DEFAULT '',
    changed_by  text NOT NULL DEFAULT '',
    changed_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (from_level IS DISTINCT FROM to_level)
);
CREATE INDEX runbook_level_history_runbook_id_idx ON runbook_level_history (runbook_id, changed_at);

-- Small platform settings (e.g. Telegram forum topic thread ids).
CREATE TABLE kv (
    key         text PRIMARY KEY CHECK (key <> ''),
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
