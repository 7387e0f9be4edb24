-- memmesh schema 28: a key records the key that created it (created_by, its id), so an
-- approval can be refused when the approver's key descends from the requester's keys (a
-- namespace admin minting itself a second approver identity). NULL: the local caller, who
-- owns the store, made it, or it was made before schema 28 (lineage unknown).
ALTER TABLE api_keys ADD COLUMN created_by TEXT COLLATE "C";
