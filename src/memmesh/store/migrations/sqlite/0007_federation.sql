-- memmesh schema 7: federation. Each peer's replication cursors and last contact, the
-- conflicts replication recorded (each with an id every node derives the same way), and
-- links by change number so the change feed can page them.
CREATE TABLE peers (
    node_id      TEXT PRIMARY KEY,
    url          TEXT,
    sent_seq     INTEGER NOT NULL DEFAULT 0,
    recv_seq     INTEGER NOT NULL DEFAULT 0,
    last_contact TEXT,
    last_error   TEXT
);

CREATE TABLE conflicts (
    id        TEXT PRIMARY KEY,
    memory_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    loser     TEXT NOT NULL,
    version   TEXT NOT NULL,
    seq       INTEGER NOT NULL
);
CREATE INDEX conflicts_memory ON conflicts(memory_id);
CREATE INDEX conflicts_seq ON conflicts(seq);
CREATE INDEX links_seq ON links(seq);

ALTER TABLE agents ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX agents_seq ON agents (seq);
