-- memmesh schema 27: a session is keyed by its namespace (<root>/<session_id>), not by its
-- id alone. Keyed by id, the first tenant to use an id took it from every other tenant (a
-- key scoped to b/* got 404 for "chat-1" once a key scoped to a/* had started one), and the
-- 404-or-201 answer told b that a/* held that id. Now each root has its own sessions; the
-- id is indexed to find the sessions a caller may mean.
-- SQLite cannot change a primary key: the table is rebuilt (each namespace was already
-- unique, since it ends with the id). IF [NOT] EXISTS: upgrade tests run this again.
DROP TABLE IF EXISTS session_turns_by_namespace;
CREATE TABLE session_turns_by_namespace (
    namespace  TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    turns      INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
INSERT INTO session_turns_by_namespace (namespace, session_id, turns, created_at, updated_at)
    SELECT namespace, session_id, turns, created_at, updated_at FROM session_turns;
DROP TABLE session_turns;
ALTER TABLE session_turns_by_namespace RENAME TO session_turns;
CREATE INDEX IF NOT EXISTS session_turns_id ON session_turns (session_id);
