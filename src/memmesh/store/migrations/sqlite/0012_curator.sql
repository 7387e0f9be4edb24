-- memmesh schema 12: curator runs, the changes each run made (what rollback puts back) and
-- the lease that keeps scheduled runs one at a time across processes sharing the store.
-- Times are Unix seconds so one set of SQL serves both backends (memmesh.curator.store).
CREATE TABLE curator_runs (
    id           TEXT PRIMARY KEY,
    started_at   REAL NOT NULL,
    completed_at REAL,
    dry_run      INTEGER NOT NULL,
    namespace    TEXT,
    actor        TEXT,
    scopes       TEXT,
    report       TEXT NOT NULL,
    rolled_back_at REAL,
    rollback_report TEXT
);
CREATE INDEX curator_runs_started ON curator_runs (started_at);

CREATE TABLE curator_changes (
    run_id     TEXT NOT NULL,
    n          INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    memory_id  TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    before     TEXT,
    after      TEXT,
    PRIMARY KEY (run_id, n)
);

CREATE TABLE curator_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);
