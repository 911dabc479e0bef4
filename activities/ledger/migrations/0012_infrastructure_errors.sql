-- Production hardening (#17): an action the platform could not carry out (its MCP server was
-- unreachable or timed out) is not a failure of the runbook's remedy. Such a run is counted
-- apart in the runbook's record (`infra_errors`, event kind 'error'), never as an execution or a
-- failure, and the incident's outcome says 'error'.
ALTER TABLE runbook_stats ADD COLUMN infra_errors integer NOT NULL DEFAULT 0 CHECK (infra_errors >= 0);

ALTER TABLE outcomes DROP CONSTRAINT outcomes_result_check;
ALTER TABLE outcomes ADD CONSTRAINT outcomes_result_check
    CHECK (result IN ('success', 'failure', 'unknown', 'error'));
