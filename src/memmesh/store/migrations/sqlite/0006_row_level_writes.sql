-- memmesh schema 6: PostgreSQL's writers stopped sharing one lock (its 0006 adds a change
-- sequence and transaction ids to the vector feed). SQLite keeps one writer at a time and
-- needs no change; this number exists so both backends share one schema version (backups
-- record it, and restore compares it).
SELECT 1;
