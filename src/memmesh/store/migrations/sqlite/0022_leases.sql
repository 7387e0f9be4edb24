-- memmesh schema 22: one neutral table for the leases that make background work in
-- `serve` take turns across processes sharing the store (memmesh.schedule.Lease): the
-- curator's run lease (`curator`) and scheduled gc (`gc`). They were rows of the
-- curator's own `curator_lease` (schema 12; the curator's was named `run`): a lease still
-- held is carried over, so a run or a gc turn in flight during the upgrade keeps its turn.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);
-- (a store migrated past 22 whose schema number was set back, as upgrade tests do, has no
-- curator_lease left to copy: an empty one stands in)
CREATE TABLE IF NOT EXISTS curator_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL);
INSERT INTO leases (name, holder, expires_at)
SELECT CASE WHEN name = 'run' THEN 'curator' ELSE name END, holder, expires_at FROM curator_lease;
DROP TABLE curator_lease;
