-- memmesh schema 1: memories, tags, full text, links, history, tombstones.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE memories (
    rowid            INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    namespace        TEXT NOT NULL,
    title            TEXT,
    content          TEXT NOT NULL,
    tier             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    tags             TEXT NOT NULL DEFAULT '[]',
    priority         INTEGER NOT NULL,
    confidence       REAL NOT NULL,
    source           TEXT NOT NULL,
    agent_id         TEXT,
    metadata         TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    expires_at       TEXT,
    valid_from       TEXT,
    valid_to         TEXT,
    access_count     INTEGER NOT NULL DEFAULT 0,
    last_accessed_at TEXT,
    content_hash     TEXT NOT NULL,
    version          TEXT NOT NULL DEFAULT '{}',
    seq              INTEGER NOT NULL
);
CREATE UNIQUE INDEX memories_ns_hash ON memories(namespace, content_hash);
CREATE INDEX memories_ns_created ON memories(namespace, created_at);
CREATE INDEX memories_created ON memories(created_at, id);
CREATE INDEX memories_title ON memories(namespace, title) WHERE title IS NOT NULL;
CREATE INDEX memories_expires ON memories(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX memories_seq ON memories(seq);

CREATE TABLE memory_tags (
    tag       TEXT NOT NULL,
    memory_id TEXT NOT NULL,
    PRIMARY KEY (tag, memory_id)
) WITHOUT ROWID;
CREATE INDEX memory_tags_memory ON memory_tags(memory_id);

CREATE VIRTUAL TABLE memories_fts USING fts5(
    title, content, tags,
    content='memories', content_rowid='rowid',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, title, content, tags) VALUES (new.rowid, new.title, new.content, new.tags);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, title, content, tags) VALUES ('delete', old.rowid, old.title, old.content, old.tags);
END;
CREATE TRIGGER memories_fts_update AFTER UPDATE OF title, content, tags ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, title, content, tags) VALUES ('delete', old.rowid, old.title, old.content, old.tags);
    INSERT INTO memories_fts(rowid, title, content, tags) VALUES (new.rowid, new.title, new.content, new.tags);
END;

CREATE TABLE links (
    source_id   TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    relation    TEXT NOT NULL,
    valid_from  TEXT,
    valid_until TEXT,
    observed_by TEXT,
    created_at  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (source_id, target_id, relation)
);
CREATE INDEX links_target ON links(target_id);

CREATE TABLE history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    memory_id TEXT NOT NULL,
    event     TEXT NOT NULL,
    old       TEXT,
    new       TEXT,
    actor     TEXT,
    at        TEXT NOT NULL
);
CREATE INDEX history_memory ON history(memory_id, id);

CREATE TABLE tombstones (
    id         TEXT PRIMARY KEY,
    namespace  TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    actor      TEXT,
    version    TEXT NOT NULL DEFAULT '{}',
    seq        INTEGER NOT NULL
);
CREATE INDEX tombstones_seq ON tombstones(seq);
