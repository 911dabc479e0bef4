-- The weekly digests (docs/reports.md), kept in the ledger so that the gateway's console, which in
-- the chart runs in its own pod without the worker's data dir, lists and shows them: one row per
-- ISO week, written (and rewritten by a re-run or a retry of the same week) by
-- `reports.write_digest`. `digest` is every number (`WeeklyDigest`, as in `<week>.json`),
-- `chart_png` the chart the report message sent, `markdown` the full report.
CREATE TABLE weekly_digests (
    week        text PRIMARY KEY CHECK (week ~ '^[0-9]{4}-W[0-9]{2}$'),
    digest      jsonb NOT NULL,
    chart_png   bytea,
    markdown    text NOT NULL DEFAULT '',
    written_at  timestamptz NOT NULL DEFAULT now()
);
