-- API keys of the gateway (docs/gateway.md): only a key's SHA-256 is stored, never the key.
-- A key is `agk_<prefix>_<secret>`: `prefix` finds the row, the hash of the whole key is compared
-- in constant time. `agents` empty: every agent. Revoked keys stay (the audit names them).
CREATE TABLE api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    prefix        text NOT NULL UNIQUE,
    key_hash      bytea NOT NULL,
    agents        text[] NOT NULL DEFAULT '{}',
    read_only     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

-- Every request through the gateway that changes anything (starts an agent run, answers an
-- approval, creates or revokes nothing here: keys are the CLI's), with the caller's key name.
CREATE TABLE gateway_audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    key_name  text NOT NULL,
    method    text NOT NULL,
    path      text NOT NULL,
    status    integer NOT NULL,
    action    text NOT NULL DEFAULT '',
    subject   text NOT NULL DEFAULT '',
    detail    text NOT NULL DEFAULT ''
);
CREATE INDEX gateway_audit_at_idx ON gateway_audit (at DESC, id DESC);
