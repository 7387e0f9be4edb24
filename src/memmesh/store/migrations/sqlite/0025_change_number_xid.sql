-- memmesh schema 25: nothing to do on SQLite (PostgreSQL's change-number function now takes
-- the transaction's xid itself; SQLite writers are serialised by its one write lock).
SELECT 1;
