-- memmesh schema 4 (PostgreSQL): write order within a namespace, for recall's context (each
-- memory's neighbours); the twin of SQLite's 0004.
CREATE INDEX memories_ns_order ON memories (namespace, created_at, id);
