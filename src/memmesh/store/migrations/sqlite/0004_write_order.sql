-- memmesh schema 4: write order within a namespace, for recall's context (each memory's neighbours).
CREATE INDEX memories_ns_order ON memories(namespace, created_at, id);
