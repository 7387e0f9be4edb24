-- memmesh schema 21: bus conversations and chat messages join the change feed (issue 15).
-- Each chat conversation and chat message gets a change number (change_seq) when it is
-- inserted, from the same counter as memories (meta.seq), so the mesh's feed, catch-up
-- paging and full resync carry them. A message also records the node that wrote it
-- (origin) and its hybrid logical clock stamp (hlc): (hlc, origin, id) is the order every
-- node shows a conversation in. Task queues (kind 'queue') stay node-local: their leases
-- and attempt tokens are claims on this node's work, so the triggers leave them out.
ALTER TABLE bus_conversations ADD COLUMN change_seq INTEGER;
ALTER TABLE bus_messages ADD COLUMN change_seq INTEGER;
ALTER TABLE bus_messages ADD COLUMN origin TEXT;
ALTER TABLE bus_messages ADD COLUMN hlc TEXT;

-- Rows written before this schema: stamped from their creation time, by this node.
UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'seq'
    AND (EXISTS (SELECT 1 FROM bus_conversations WHERE kind = 'chat') OR EXISTS (SELECT 1 FROM bus_messages WHERE state IS NULL));
UPDATE bus_messages SET hlc = printf('%013d.%05d', CAST(created_at * 1000 AS INTEGER), 0),
    origin = (SELECT value FROM meta WHERE key = 'node_id');
UPDATE bus_conversations SET change_seq = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'seq') WHERE kind = 'chat';
UPDATE bus_messages SET change_seq = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'seq') WHERE state IS NULL;

CREATE INDEX bus_conversations_feed ON bus_conversations (change_seq) WHERE change_seq IS NOT NULL;
CREATE INDEX bus_messages_feed ON bus_messages (change_seq) WHERE change_seq IS NOT NULL;
CREATE INDEX bus_messages_order ON bus_messages (conversation_id, hlc, origin, id);

CREATE TRIGGER bus_conversations_feed AFTER INSERT ON bus_conversations WHEN NEW.kind = 'chat'
BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'seq';
    UPDATE bus_conversations SET change_seq = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'seq') WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER bus_messages_feed AFTER INSERT ON bus_messages WHEN NEW.state IS NULL
BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'seq';
    UPDATE bus_messages SET change_seq = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'seq') WHERE rowid = NEW.rowid;
END;
