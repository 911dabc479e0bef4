-- A runbook's evidence: the read-only tool calls (with `{{ labels.NAME }}` templates, like its
-- actions) an incident gathers before its diagnosis, the investigate stage
-- (docs/runbook-format.md#evidence). Empty for every runbook that declares none.
ALTER TABLE runbooks
    ADD COLUMN evidence jsonb NOT NULL DEFAULT '[]'::jsonb
        CHECK (jsonb_typeof(evidence) = 'array');
