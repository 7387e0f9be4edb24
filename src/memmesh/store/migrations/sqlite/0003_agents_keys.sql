-- memmesh schema 3: registered agents, hashed API keys, per-namespace daily write counts.
CREATE TABLE agents (
    agent_id     TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL,
    namespaces   TEXT NOT NULL DEFAULT '["*"]',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    role         TEXT NOT NULL,
    namespaces   TEXT NOT NULL DEFAULT '["*"]',
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX api_keys_active ON api_keys(revoked_at);

CREATE TABLE write_counts (
    namespace TEXT NOT NULL,
    day       TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (namespace, day)
) WITHOUT ROWID;
