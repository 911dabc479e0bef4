-- Earned autonomy (#5): promotion questions and their answers, and the indexes the
-- quarterly trust review reads by time. The trust record itself (runbook_stats,
-- runbook_stat_events, runbook_level_history) is in 0001.

-- One row per promotion question put to a human (RunbookPromotionWorkflow, or a proposal of
-- the quarterly review). A refused or expired question is not asked again until the runbook
-- has more evidence (agentic_core/trust.py REASK_AFTER_EXECUTIONS).
CREATE TABLE runbook_promotion_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_key  text NOT NULL UNIQUE CHECK (request_key <> ''),  -- the workflow run id
    workflow_id  text NOT NULL DEFAULT '',
    runbook_id   text NOT NULL,
    from_level   text NOT NULL CHECK (from_level IN ('manual', 'prompted', 'standard')),
    to_level     text NOT NULL CHECK (to_level IN ('manual', 'prompted', 'standard')),
    executions   integer NOT NULL DEFAULT 0 CHECK (executions >= 0),  -- the record when asked
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'approved', 'refused', 'expired', 'stale')),
    decided_by   text,
    reason       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz
);
CREATE INDEX runbook_promotion_requests_runbook_idx ON runbook_promotion_requests (runbook_id, to_level, created_at);

CREATE INDEX runbook_stat_events_created_at_idx ON runbook_stat_events (created_at);
CREATE INDEX decisions_choice_decided_at_idx ON decisions (choice, decided_at);
