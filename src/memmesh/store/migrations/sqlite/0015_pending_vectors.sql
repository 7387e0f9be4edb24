-- memmesh schema 15: vectors owed. A write that commits before its embedding is computed
-- (the background embedder, memmesh.recall.background) records the memory here in the
-- same transaction; storing its vector removes the row. A process that starts finds what
-- a killed one left unembedded here, without scanning every memory.
CREATE TABLE pending_vectors (
    memory_id TEXT PRIMARY KEY,
    seq       BIGINT NOT NULL
);
