-- memmesh schema 5: SQLite gained an n-gram full-text index for scripts written without
-- spaces (Chinese, Japanese, Thai, …; its 0005). PostgreSQL does not have it yet (see
-- docs/recall.md); this number exists so both backends share one schema version (backups
-- record it, and restore compares it).
SELECT 1;
