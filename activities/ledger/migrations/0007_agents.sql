-- 0007_agents: agent runs (AgentWorkflow, docs/agents.md), their transcripts and the blobs that
-- hold large tool results, and approved writes that belong to an agent run, not an incident.
--
-- Writes an activity may retry are keyed: a run on its id, a message on its key (run, step,
-- what it is), a blob on its id (run, step, call). The first write wins.

CREATE TABLE agent_runs (
    id            text PRIMARY KEY,  -- the AgentWorkflow's id, agent-<request id>
    request_id    text NOT NULL DEFAULT '',
    request       text NOT NULL DEFAULT '',
    requested_by  text NOT NULL DEFAULT '',
    source        text NOT NULL DEFAULT '',
    agent         text,
    route_method  text,
    route_score   double precision,
    incident_id   text,  -- an incident's investigate stage (no FK: the incident may be recorded later)
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('routing', 'running', 'awaiting_approval', 'done', 'limited', 'failed',
                                    'not_configured')),
    answer        text NOT NULL DEFAULT '',
    limit_hit     text,
    steps         integer NOT NULL DEFAULT 0 CHECK (steps >= 0),
    tool_calls    integer NOT NULL DEFAULT 0 CHECK (tool_calls >= 0),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX agent_runs_started_at_idx ON agent_runs (started_at DESC);

CREATE TABLE agent_blobs (
    id          text PRIMARY KEY,
    run_id      text NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    size        integer NOT NULL CHECK (size >= 0),  -- characters
    content     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_blobs_run_id_idx ON agent_blobs (run_id);

CREATE TABLE agent_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- the transcript's order
    run_id        text NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    key           text NOT NULL UNIQUE CHECK (key <> ''),
    step          integer NOT NULL CHECK (step >= 0),
    role          text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content       text NOT NULL DEFAULT '',  -- the text, or a note when the text is a blob
    blob_id       text REFERENCES agent_blobs (id) ON DELETE SET NULL,
    tool_calls    jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(tool_calls) = 'array'),  -- assistant
    tool_call_id  text,  -- tool: the call this answers
    tool_name     text,
    arguments     jsonb,
    status        text,  -- tool: ok, error, refused, approved, denied, limited
    model         text NOT NULL DEFAULT '',
    tokens_in     integer NOT NULL DEFAULT 0,
    tokens_out    integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_messages_run_id_idx ON agent_messages (run_id, id);

-- An approved write of an agent run is an action of the run: exactly once on its idempotency
-- key, like an incident's, but with no incident row behind it.
ALTER TABLE actions ALTER COLUMN incident_id DROP NOT NULL;
ALTER TABLE actions ADD COLUMN run_id text REFERENCES agent_runs (id) ON DELETE CASCADE;
ALTER TABLE actions ADD CONSTRAINT actions_one_subject CHECK ((incident_id IS NULL) <> (run_id IS NULL));
CREATE INDEX actions_run_id_idx ON actions (run_id, action_index) WHERE run_id IS NOT NULL;
