-- A question with nothing to run (no runbook, no action, every action refused) is put to a
-- human in VERBOSE mode; "acknowledged" records that a human saw it (docs/incidents.md).
ALTER TABLE decisions DROP CONSTRAINT decisions_choice_check;
ALTER TABLE decisions
    ADD CONSTRAINT decisions_choice_check
        CHECK (choice IN ('approved', 'acknowledged', 'ignored', 'modified', 'expired', 'automatic'));
