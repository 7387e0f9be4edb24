-- memmesh schema 16: vectors are stored as 8-bit codes with a per-vector float32 scale
-- (memmesh.store.vector_codec): 388 bytes for 384 dimensions instead of 1,536. Existing
-- float32 vectors (4 bytes per dimension) are re-encoded in place by the SQL function
-- memmesh_compact_vector, which memmesh registers on every connection; their change
-- numbers stay, since the values are the same to one 8-bit step.
UPDATE vectors SET vector = memmesh_compact_vector(vector, dim) WHERE length(vector) = 4 * dim;
-- (PostgreSQL's 0016 stores halfvec instead, and adds the n-gram index for scripts written
-- without spaces that SQLite has had since schema 5.)
