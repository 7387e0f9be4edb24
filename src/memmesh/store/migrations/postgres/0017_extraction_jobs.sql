-- memmesh schema 17: background fact-extraction jobs (memmesh.extraction). The turns a job
-- extracts from are committed before the job row exists; the row only tracks the work that
-- follows, so any worker process of `serve` can answer a status poll. Times are Unix seconds.
CREATE TABLE extraction_jobs (
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    created_by  TEXT,
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    report      TEXT,
    error       TEXT
);
CREATE INDEX extraction_jobs_created ON extraction_jobs (created_at);

-- Which stored extracted facts hold a single-valued attribute ("ana|lives in") or a
-- preference topic ("topic:green tea") in a namespace: a new fact finds the facts it
-- supersedes or contradicts by one indexed lookup instead of a search. Rows of deleted
-- facts are harmless (the lookup reads live memories only).
CREATE TABLE extraction_slots (
    namespace TEXT NOT NULL,
    slot_key  TEXT NOT NULL,
    memory_id TEXT NOT NULL,
    PRIMARY KEY (namespace, slot_key, memory_id)
);
