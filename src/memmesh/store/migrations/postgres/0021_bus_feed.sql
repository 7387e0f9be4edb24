-- memmesh schema 21: bus conversations and chat messages join the change feed (issue 15).
-- See the SQLite file: a change number per chat conversation and chat message (from
-- memmesh_next_change(), held until the inserting transaction ends, so the feed never reads
-- past it), the writing node (origin) and its HLC stamp. Task queues stay node-local.
ALTER TABLE bus_conversations ADD COLUMN change_seq BIGINT;
ALTER TABLE bus_messages ADD COLUMN change_seq BIGINT;
ALTER TABLE bus_messages ADD COLUMN origin TEXT;
ALTER TABLE bus_messages ADD COLUMN hlc TEXT;

UPDATE bus_messages SET hlc = lpad((created_at * 1000)::bigint::text, 13, '0') || '.00000',
    origin = (SELECT value FROM meta WHERE key = 'node_id');
-- A change number is taken only when there are rows to stamp (a new store's counter stays put).
UPDATE bus_conversations SET change_seq = n.v
    FROM (SELECT memmesh_next_change() AS v WHERE EXISTS (SELECT 1 FROM bus_conversations WHERE kind = 'chat')) n
    WHERE kind = 'chat';
UPDATE bus_messages SET change_seq = n.v
    FROM (SELECT memmesh_next_change() AS v WHERE EXISTS (SELECT 1 FROM bus_messages WHERE state IS NULL)) n
    WHERE state IS NULL;

CREATE INDEX bus_conversations_feed ON bus_conversations (change_seq) WHERE change_seq IS NOT NULL;
CREATE INDEX bus_messages_feed ON bus_messages (change_seq) WHERE change_seq IS NOT NULL;
CREATE INDEX bus_messages_order ON bus_messages (conversation_id, hlc, origin, id);

CREATE FUNCTION memmesh_bus_feed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_seq := memmesh_next_change();
    RETURN NEW;
END
$$;
CREATE TRIGGER bus_conversations_feed BEFORE INSERT ON bus_conversations
    FOR EACH ROW WHEN (NEW.kind = 'chat') EXECUTE FUNCTION memmesh_bus_feed();
CREATE TRIGGER bus_messages_feed BEFORE INSERT ON bus_messages
    FOR EACH ROW WHEN (NEW.state IS NULL) EXECUTE FUNCTION memmesh_bus_feed();
