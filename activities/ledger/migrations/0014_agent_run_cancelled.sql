-- Agent runs end as they really ended (docs/agents.md#how-a-run-ends).
--
-- A run cancelled from outside (a client's `cancel`, `temporal workflow cancel`, the Web UI) now
-- closes its row `cancelled`; before, the ledger had no such status and the row said `failed` with
-- an answer that began "Cancelled while it waited for an answer to …" or "Cancelled after N model
-- turn(s)" (RUN_CANCEL_PATCH). Those rows say `cancelled` now: no failed run's answer begins so
-- (a failed run's answer is the code's own words: "the run could not go on: …", "The model could
-- not answer: …", "The request could not be routed …").
--
-- `checked_at`: when the reconciler (workers/agent_runs.py) last found the run of an open row
-- (`routing`, `running`, `awaiting_approval`) still running in Temporal; each pass takes the rows
-- looked at longest ago first, so a bounded pass reaches every open row in turn.
ALTER TABLE agent_runs DROP CONSTRAINT agent_runs_status_check;
ALTER TABLE agent_runs
    ADD CONSTRAINT agent_runs_status_check
        CHECK (status IN ('routing', 'running', 'awaiting_approval', 'done', 'limited', 'failed', 'not_configured',
                          'cancelled'));

UPDATE agent_runs SET status = 'cancelled'
WHERE status = 'failed'
  AND answer ~ '^Cancelled (while it waited for an answer to |after [0-9]+ model turn\(s\))';

ALTER TABLE agent_runs ADD COLUMN checked_at timestamptz;
CREATE INDEX agent_runs_open_idx ON agent_runs (checked_at NULLS FIRST, started_at)
    WHERE status IN ('routing', 'running', 'awaiting_approval');
