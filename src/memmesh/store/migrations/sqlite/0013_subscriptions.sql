-- memmesh schema 13: webhook subscriptions to namespace changes, their durable delivery
-- queue (retried with backoff, dead-lettered after subscriptions.max_attempts), and agent
-- inboxes (memory_notify / memory_inbox). Times are Unix seconds, like the bus's, so one
-- set of SQL serves both backends (memmesh.subscriptions.core).
CREATE TABLE subscriptions (
    id          TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    events      TEXT NOT NULL,
    owner_agent TEXT,
    owner_key   TEXT,
    owner_role  TEXT NOT NULL,
    owner_scope TEXT NOT NULL,
    created_at  REAL NOT NULL,
    seen_seq    BIGINT NOT NULL,
    state       TEXT NOT NULL
);
CREATE INDEX subscriptions_state ON subscriptions (state);

CREATE TABLE subscription_deliveries (
    id              TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    event           TEXT NOT NULL,
    memory_id       TEXT,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt    REAL NOT NULL,
    last_error      TEXT,
    last_status     INTEGER,
    created_at      REAL NOT NULL,
    delivered_at    REAL
);
CREATE INDEX subscription_deliveries_due ON subscription_deliveries (state, next_attempt);
CREATE INDEX subscription_deliveries_sub ON subscription_deliveries (subscription_id, created_at);

CREATE TABLE inbox_messages (
    id         TEXT PRIMARY KEY,
    recipient  TEXT NOT NULL,
    sender     TEXT NOT NULL,
    subject    TEXT,
    body       TEXT NOT NULL,
    namespace  TEXT,
    memory_id  TEXT,
    created_at REAL NOT NULL,
    read_at    REAL
);
CREATE INDEX inbox_messages_recipient ON inbox_messages (recipient, read_at, created_at);
