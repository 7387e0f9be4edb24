-- memmesh schema 3 (PostgreSQL): registered agents, hashed API keys, per-namespace daily
-- write counts (the twin of SQLite's 0003).
CREATE TABLE agents (
    agent_id     TEXT COLLATE "C" PRIMARY KEY,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL,
    namespaces   JSONB NOT NULL DEFAULT '["*"]',
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    key_hash     TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    agent_id     TEXT COLLATE "C" NOT NULL,
    role         TEXT NOT NULL,
    namespaces   JSONB NOT NULL DEFAULT '["*"]',
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_active ON api_keys (revoked_at);

CREATE TABLE write_counts (
    namespace TEXT COLLATE "C" NOT NULL,
    day       TEXT COLLATE "C" NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (namespace, day)
);
