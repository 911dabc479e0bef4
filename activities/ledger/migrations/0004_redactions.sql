-- Cloud escalation (docs/incidents.md): per proposal, how many items of each kind were
-- redacted from what was sent to the cloud model, e.g. {"secret": 2, "email": 1}. Counts
-- only: the values never leave the process that redacted them. '{}' when nothing was sent.
ALTER TABLE proposals
    ADD COLUMN redactions jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(redactions) = 'object');
