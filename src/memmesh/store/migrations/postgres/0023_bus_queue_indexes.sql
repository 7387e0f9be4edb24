-- memmesh schema 23: task queues find their work through small partial indexes (issue 24).
-- The index on (conversation_id, state, seq) held an entry for every state a task passed
-- through: every claim (oldest ready task) and every complete (the leases in flight) walked
-- the entries that ready and leased tasks left behind once done, so each operation grew with
-- the tasks done since the last vacuum. Each partial index below holds only the tasks in
-- its state: ready in queue order, leases in flight by expiry (the expired-lease check and
-- the next expiry a waiting claim sleeps until), dead letters in order for their listing.
-- IF [NOT] EXISTS: upgrade tests set the schema number back and run this again.
DROP INDEX IF EXISTS bus_messages_state;
CREATE INDEX IF NOT EXISTS bus_messages_ready ON bus_messages (conversation_id, seq) WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS bus_messages_leased ON bus_messages (conversation_id, lease_expires) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS bus_messages_dead ON bus_messages (conversation_id, seq) WHERE state = 'dead';
