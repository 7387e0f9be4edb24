-- memmesh schema 2 (PostgreSQL): embeddings (one per memory, tagged with the model) and the
-- archive of expired memories. The vector column has no fixed dimension so models of any
-- size can live side by side. With storage.pg_ann_index = true memmesh creates one partial
-- HNSW index per dimension in use (vectors_hnsw_<dim>, on embedding::vector(<dim>) WHERE
-- dim = <dim>) the first time a vector of that dimension is stored; by default recall uses
-- the in-process index and the database only keeps the vectors.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE vectors (
    memory_id TEXT COLLATE "C" PRIMARY KEY,
    model     TEXT COLLATE "C" NOT NULL,
    dim       INTEGER NOT NULL,
    embedding vector NOT NULL,
    seq       BIGINT NOT NULL
);
CREATE INDEX vectors_seq ON vectors (seq);
CREATE INDEX vectors_model ON vectors (model);

CREATE TABLE vector_removals (
    memory_id TEXT COLLATE "C" PRIMARY KEY,
    seq       BIGINT NOT NULL
);
CREATE INDEX vector_removals_seq ON vector_removals (seq);

CREATE TABLE archive (
    id          TEXT COLLATE "C" PRIMARY KEY,
    namespace   TEXT COLLATE "C" NOT NULL,
    archived_at TIMESTAMPTZ NOT NULL,
    reason      TEXT NOT NULL,
    data        JSON NOT NULL
);
CREATE INDEX archive_ns ON archive (namespace, archived_at);
