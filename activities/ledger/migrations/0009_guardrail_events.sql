-- Guardrail events (docs/guardrails.md): every refusal or limit hit of an agent, recorded once.
-- `key` makes recording idempotent (a retried activity records once); `subject` is what it
-- happened in (an incident, an agent run, a rollout probe): no foreign key, any of them.
-- `kind` mirrors agentic_core.agents.GuardrailKind; change both.
CREATE TABLE guardrail_events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key      text NOT NULL UNIQUE CHECK (key <> ''),
    at       timestamptz NOT NULL DEFAULT now(),
    kind     text NOT NULL CHECK (kind IN ('tool_refused', 'limit', 'write_denied', 'untrusted_plan',
                                           'protected_namespace', 'egress_refused')),
    agent    text NOT NULL DEFAULT '',
    subject  text NOT NULL DEFAULT '',
    tool     text,
    detail   text NOT NULL DEFAULT ''
);
-- `agentic guardrails list` (newest first, optionally of one kind) and the digest's count by kind
CREATE INDEX guardrail_events_at_idx ON guardrail_events (at DESC, id DESC);
CREATE INDEX guardrail_events_kind_at_idx ON guardrail_events (kind, at DESC, id DESC);
CREATE INDEX guardrail_events_subject_idx ON guardrail_events (subject);
