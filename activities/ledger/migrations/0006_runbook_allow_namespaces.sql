-- Protected namespaces (AGENTIC_PROTECTED_NAMESPACES, e.g. kube-system) a runbook's own plan
-- may change: its front matter's `allow_namespaces` (docs/runbook-format.md). Such actions
-- pass the tool guard and still always ask a human. Empty for every other runbook.
ALTER TABLE runbooks
    ADD COLUMN allow_namespaces jsonb NOT NULL DEFAULT '[]'::jsonb
        CHECK (jsonb_typeof(allow_namespaces) = 'array');
