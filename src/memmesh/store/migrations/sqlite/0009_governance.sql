-- memmesh schema 9: governance. Per-namespace standards (governance per action, default
-- tier, TTL, retention, required tags) and the pending actions a standard's `approve`
-- queues, with their decisions. One text for both backends (memmesh/governance/store.py
-- reads and writes these tables with shared SQL): times are RFC 3339 text, JSON is text.
CREATE TABLE namespace_standards (
    namespace      TEXT PRIMARY KEY,
    governance     TEXT NOT NULL,
    default_tier   TEXT,
    ttl_seconds    BIGINT,
    retention_days BIGINT,
    required_tags  TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    updated_by     TEXT
);

CREATE TABLE pending_actions (
    id             TEXT PRIMARY KEY,
    action         TEXT NOT NULL,
    namespace      TEXT NOT NULL,
    rule_namespace TEXT NOT NULL,
    payload        TEXT NOT NULL,
    requester      TEXT NOT NULL,
    requested_by   TEXT,
    requested_at   TEXT NOT NULL,
    status         TEXT NOT NULL,
    decided_by     TEXT,
    decided_at     TEXT,
    reason         TEXT,
    result         TEXT,
    error          TEXT
);
CREATE INDEX pending_actions_status ON pending_actions (status, requested_at);
CREATE INDEX pending_actions_namespace ON pending_actions (namespace);
