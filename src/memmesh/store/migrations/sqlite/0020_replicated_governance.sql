-- memmesh schema 20: namespace standards, pending actions and link removals replicate.
-- Each standard and pending action gets the change number (seq) of the write that last
-- changed it, so the mesh's change feed ships it, and the version stamp (hlc, node) of that
-- write, so concurrent changes on two nodes resolve by last writer on (HLC, node id), the
-- same way on every node (memmesh.federation.governed). A cleared standard stays as a row
-- with cleared = 1 (a tombstone: an older push of the standard never brings it back).
-- link_removals is the tombstone of a removed link (a curator rollback): a link whose
-- created_at is not after removed_at stays removed on every node.
ALTER TABLE namespace_standards ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE namespace_standards ADD COLUMN hlc TEXT NOT NULL DEFAULT '';
ALTER TABLE namespace_standards ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE namespace_standards ADD COLUMN cleared BIGINT NOT NULL DEFAULT 0;
CREATE INDEX namespace_standards_seq ON namespace_standards (seq);
ALTER TABLE pending_actions ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pending_actions ADD COLUMN hlc TEXT NOT NULL DEFAULT '';
ALTER TABLE pending_actions ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX pending_actions_seq ON pending_actions (seq);
CREATE TABLE link_removals (
    source_id  TEXT NOT NULL,
    target_id  TEXT NOT NULL,
    relation   TEXT NOT NULL,
    removed_at TEXT NOT NULL,
    removed_by TEXT,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (source_id, target_id, relation)
);
CREATE INDEX link_removals_seq ON link_removals (seq);
