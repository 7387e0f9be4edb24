-- memmesh schema 26: fewer index entries per queue task, and HOT updates of a conversation
-- row on every send (issue 24).
-- bus_messages_order (conversation_id, hlc, origin, id) served no query: the transcript
-- orders by COALESCE(hlc, ''), COALESCE(origin, ''), id, which it cannot match, and reaches
-- a conversation's messages through the primary key as well. Every send and every state
-- change of a task (claim, complete, fail: new row versions, never HOT, since the partial
-- queue indexes name `state`) wrote an entry into it, and a plan prepared while the table
-- was nearly empty reached one task through it by scanning every message of its queue.
-- bus_conversations_archived named last_activity, which every send moves: each send wrote
-- a new version of its conversation's row with new entries in both indexes, and every
-- claim and complete then walked the dead versions' primary-key entries (thousands, on a
-- busy queue, between vacuums). Without it, and with room left in each page (fillfactor),
-- the send's update is HOT: same page, no index entry. Listing conversations filters on
-- archived_at and the idle time computed from last_activity, over a small table.
-- IF [NOT] EXISTS: upgrade tests set the schema number back and run this again.
DROP INDEX IF EXISTS bus_messages_order;
DROP INDEX IF EXISTS bus_conversations_archived;
CREATE INDEX IF NOT EXISTS bus_conversations_archived_at ON bus_conversations (archived_at);
ALTER TABLE bus_conversations SET (fillfactor = 50);
