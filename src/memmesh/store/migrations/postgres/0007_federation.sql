-- memmesh schema 7 (PostgreSQL): federation, the twin of SQLite's 0007. Each peer's
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

-- The change feed's safe head. Change numbers come from a sequence (0006), handed out
-- without waiting, so a transaction holding number 41 may commit after one holding 42; a
-- follower that read up to 42 would never see 41. Each writer therefore holds a
-- transaction-level advisory lock on its own change number until it commits, taken inside a
-- short shared "gate" so no reader can look between nextval() and the lock; the feed's head
-- is one below the smallest number still held (see PostgresStore._feed_head).
CREATE FUNCTION memmesh_next_change() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM pg_advisory_lock_shared(7262001);
    n := nextval('memmesh_changes');
    PERFORM pg_advisory_xact_lock(n);
    PERFORM pg_advisory_unlock_shared(7262001);
    RETURN n;
END
$$;
