-- memmesh schema 8: the audit log. One row per audited change, appended in the same
-- transaction as the change; `hash` = sha256(previous hash || canonical entry), so the rows
-- form a chain (see memmesh.audit). `audit_anchor` holds what pruning removed: the size
-- pruned, the hash of the last pruned entry (the chain continues from it) and the Merkle
-- compact range covering the pruned entries (later checkpoints' roots build on it).
CREATE TABLE audit_log (
    idx       BIGINT PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    namespace TEXT,
    target    TEXT,
    detail    TEXT NOT NULL,
    hash      TEXT NOT NULL
);

CREATE TABLE audit_anchor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    size      BIGINT NOT NULL,
    last_hash TEXT NOT NULL,
    frontier  TEXT NOT NULL
);
