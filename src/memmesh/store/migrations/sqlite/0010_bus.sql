-- memmesh schema 10: the message bus (conversations, messages, per-agent cursors, task
-- leases with fencing tokens, dead letters) and session turn counters. Times are Unix
-- seconds so one set of SQL serves both backends (memmesh.bus.store).
CREATE TABLE bus_conversations (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    topic         TEXT,
    participants  TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    created_by    TEXT,
    created_at    REAL NOT NULL,
    last_activity REAL NOT NULL,
    timeout_s     REAL NOT NULL,
    archived_at   REAL,
    last_seq      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX bus_conversations_archived ON bus_conversations (archived_at, last_activity);

CREATE TABLE bus_messages (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    sender          TEXT NOT NULL,
    recipient       TEXT,
    body            TEXT NOT NULL,
    created_at      REAL NOT NULL,
    state           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_token     TEXT,
    lease_expires   REAL,
    history         TEXT,
    result          TEXT,
    dead_reason     TEXT,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX bus_messages_state ON bus_messages (conversation_id, state, seq);

CREATE TABLE bus_cursors (
    conversation_id TEXT NOT NULL,
    agent           TEXT NOT NULL,
    delivered_seq   INTEGER NOT NULL DEFAULT 0,
    acked_seq       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, agent)
);

CREATE TABLE session_turns (
    session_id TEXT PRIMARY KEY,
    namespace  TEXT NOT NULL,
    turns      INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
