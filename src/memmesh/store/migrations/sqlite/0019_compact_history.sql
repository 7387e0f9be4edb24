-- memmesh schema 19: history snapshots (the whole memory an add, delete, archive or restore
-- records) are stored as a positional array instead of a keyed object, leaving out what the
-- row itself says (the id, the content hash, updated_at = created_at, created_at = at):
-- memmesh.store.sql.history_codec. Readers unpack it, so every answer stays the same.
-- Existing rows are packed in place by the SQL function memmesh_history_pack, which memmesh
-- registers on every connection; a value that would not unpack to exactly itself is left as is.
UPDATE history
SET old = memmesh_history_pack(memory_id, at, old),
    new = memmesh_history_pack(memory_id, at, new)
WHERE substr(old, 1, 7) = '{"id": ' OR substr(new, 1, 7) = '{"id": ';
-- memories_ns_created (namespace, created_at) is a prefix of memories_ns_order (namespace,
-- created_at, id): every query it served, the longer index serves (EXPLAIN QUERY PLAN of the
-- list, count and namespace queries, docs/benchmarks.md); 46 bytes a memory at 10k.
DROP INDEX IF EXISTS memories_ns_created;
