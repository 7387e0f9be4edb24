-- memmesh schema 27: a session is keyed by its namespace (<root>/<session_id>), not by its
-- id alone. Keyed by id, the first tenant to use an id took it from every other tenant (a
-- key scoped to b/* got 404 for "chat-1" once a key scoped to a/* had started one), and the
-- 404-or-201 answer told b that a/* held that id. Now each root has its own sessions; the
-- id is indexed to find the sessions a caller may mean. Each namespace was already unique
-- (it ends with the id). IF [NOT] EXISTS: upgrade tests run this again.
ALTER TABLE session_turns DROP CONSTRAINT IF EXISTS session_turns_pkey;
ALTER TABLE session_turns ADD PRIMARY KEY (namespace);
CREATE INDEX IF NOT EXISTS session_turns_id ON session_turns (session_id);
