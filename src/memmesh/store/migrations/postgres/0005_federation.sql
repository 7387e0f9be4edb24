-- memmesh schema 5 (PostgreSQL): federation, the twin of SQLite's 0005. Each peer's
-- replication cursors and last contact, recorded conflicts (links_seq exists since 0001).
CREATE TABLE peers (
    node_id      TEXT COLLATE "C" PRIMARY KEY,
    url          TEXT,
    sent_seq     BIGINT NOT NULL DEFAULT 0,
    recv_seq     BIGINT NOT NULL DEFAULT 0,
    last_contact TIMESTAMPTZ,
    last_error   TEXT
);

CREATE TABLE conflicts (
    id        TEXT COLLATE "C" PRIMARY KEY,
    memory_id TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    loser     JSONB NOT NULL,
    version   JSONB NOT NULL,
    seq       BIGINT NOT NULL
);
CREATE INDEX conflicts_memory ON conflicts (memory_id);
CREATE INDEX conflicts_seq ON conflicts (seq);

ALTER TABLE agents ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX agents_seq ON agents (seq);
