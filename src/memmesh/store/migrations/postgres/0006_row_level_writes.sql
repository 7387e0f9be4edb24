-- memmesh schema 6 (PostgreSQL): writers no longer share one database-wide lock.
-- Change numbers come from a sequence (handed out without waiting, so not in commit
-- order); the vector change feed that each node's in-process index follows is read by
-- transaction id instead: every vector row and removal records the xid8 of the transaction
-- that wrote it, and a reader asks for rows written by transactions at or above the oldest
-- transaction that was still running at its previous read (pg_snapshot_xmin), so a row
-- that commits late is never skipped.
CREATE SEQUENCE memmesh_changes AS BIGINT;
SELECT setval('memmesh_changes', coalesce((SELECT value::bigint FROM meta WHERE key = 'seq'), 0) + 1, false);
DELETE FROM meta WHERE key = 'seq';

ALTER TABLE vectors ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE vector_removals ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX vectors_txid ON vectors (txid);
CREATE INDEX vector_removals_txid ON vector_removals (txid);
