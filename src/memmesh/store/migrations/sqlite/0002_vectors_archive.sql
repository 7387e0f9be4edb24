-- memmesh schema 2: embeddings (one per memory, tagged with the model) and the archive of expired memories.
CREATE TABLE vectors (
    memory_id TEXT PRIMARY KEY,
    model     TEXT NOT NULL,
    dim       INTEGER NOT NULL,
    vector    BLOB NOT NULL,
    seq       INTEGER NOT NULL
);
CREATE INDEX vectors_seq ON vectors(seq);
CREATE INDEX vectors_model ON vectors(model);

CREATE TABLE vector_removals (
    memory_id TEXT PRIMARY KEY,
    seq       INTEGER NOT NULL
);
CREATE INDEX vector_removals_seq ON vector_removals(seq);

CREATE TABLE archive (
    id          TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    archived_at TEXT NOT NULL,
    reason      TEXT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX archive_ns ON archive(namespace, archived_at);
