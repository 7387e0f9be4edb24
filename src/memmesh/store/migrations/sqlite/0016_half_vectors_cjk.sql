-- memmesh schema 16: vectors are stored as float16 (memmesh.store.vector_codec), half the
-- bytes of float32. Existing float32 vectors (4 bytes per dimension) are re-encoded in
-- place by the SQL function memmesh_half_vector, which memmesh registers on every
-- connection; their change numbers stay, since the values are the same to 1e-4.
UPDATE vectors SET vector = memmesh_half_vector(vector, dim) WHERE length(vector) = 4 * dim;
-- (PostgreSQL's 0016 also adds the n-gram index for scripts written without spaces that
-- SQLite has had since schema 5.)
