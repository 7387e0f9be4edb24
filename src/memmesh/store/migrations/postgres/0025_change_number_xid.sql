-- memmesh schema 25: a change number is handed out only to a transaction that has an xid.
-- The vector change feed (PostgresStore.vector_changes) treats "no transaction running at
-- the snapshot" as "the counter read before it covers everything": a writer holding a
-- change number without an xid would not count as running, and its rows would be missed.
-- Every write transaction used to take its xid first, in a statement of its own (a round
-- trip per write, also for writes that take no change number, e.g. an audit-only append);
-- the function now takes it itself, before nextval(), for every caller (Python or trigger).
CREATE OR REPLACE FUNCTION memmesh_next_change() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM pg_current_xact_id();
    PERFORM pg_advisory_lock_shared(7262001);
    n := nextval('memmesh_changes');
    PERFORM pg_advisory_xact_lock(n);
    PERFORM pg_advisory_unlock_shared(7262001);
    RETURN n;
END
$$;
