-- memmesh schema 19 (PostgreSQL): history snapshots (the whole memory an add, delete,
-- archive or restore records) are stored as a positional JSON array instead of a keyed
-- object: memmesh.store.sql.history_codec, format 1. Readers unpack it, so every answer
-- stays the same. Existing rows are packed in place here; a snapshot whose keys are not
-- exactly the 18 of format 1, in that order, is left keyed. Only what this SQL can check
-- exactly is left out (0 in its place): the id (= memory_id), the content hash (= sha256 of
-- namespace, newline, content) and updated_at (= created_at); created_at stays.
CREATE FUNCTION memmesh_history_pack(memory_id TEXT, snapshot JSON) RETURNS JSON
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    found_keys TEXT[];
BEGIN
    IF snapshot IS NULL OR json_typeof(snapshot) <> 'object' THEN
        RETURN snapshot;
    END IF;
    SELECT array_agg(k ORDER BY n) INTO found_keys FROM json_object_keys(snapshot) WITH ORDINALITY AS t(k, n);
    IF found_keys IS DISTINCT FROM ARRAY['id', 'namespace', 'title', 'content', 'tier', 'kind', 'tags', 'priority',
            'confidence', 'source', 'agent_id', 'metadata', 'created_at', 'updated_at', 'expires_at',
            'valid_from', 'valid_to', 'content_hash'] THEN
        RETURN snapshot;
    END IF;
    RETURN json_build_array(
        1,
        CASE WHEN json_typeof(snapshot->'id') = 'string' AND snapshot->>'id' = memory_id
             THEN '0'::json ELSE snapshot->'id' END,
        snapshot->'namespace', snapshot->'title', snapshot->'content', snapshot->'tier', snapshot->'kind',
        snapshot->'tags', snapshot->'priority', snapshot->'confidence', snapshot->'source',
        snapshot->'agent_id', snapshot->'metadata', snapshot->'created_at',
        CASE WHEN json_typeof(snapshot->'updated_at') = 'string' AND json_typeof(snapshot->'created_at') = 'string'
                  AND snapshot->>'updated_at' = snapshot->>'created_at'
             THEN '0'::json ELSE snapshot->'updated_at' END,
        snapshot->'expires_at', snapshot->'valid_from', snapshot->'valid_to',
        CASE WHEN json_typeof(snapshot->'content_hash') = 'string'
                  AND json_typeof(snapshot->'namespace') = 'string' AND json_typeof(snapshot->'content') = 'string'
                  AND snapshot->>'content_hash' = encode(sha256(convert_to(
                      (snapshot->>'namespace') || E'\n' || (snapshot->>'content'), 'UTF8')), 'hex')
             THEN '0'::json ELSE snapshot->'content_hash' END
    );
END
$$;
UPDATE history SET old = memmesh_history_pack(memory_id, old), new = memmesh_history_pack(memory_id, new)
WHERE json_typeof(old) = 'object' OR json_typeof(new) = 'object';
DROP FUNCTION memmesh_history_pack(TEXT, JSON);
-- memories_ns_created (namespace, created_at) is a prefix of memories_ns_order (namespace,
-- created_at, id): the longer index serves every query it did.
DROP INDEX IF EXISTS memories_ns_created;
