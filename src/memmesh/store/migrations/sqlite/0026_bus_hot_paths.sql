-- memmesh schema 26: nothing to do on SQLite. On PostgreSQL this drops two indexes whose
-- entries every send and task state change rewrote (see the PostgreSQL file); SQLite
-- updates a row in place and keeps its own query plans, so they are left as they are.
SELECT 1;
