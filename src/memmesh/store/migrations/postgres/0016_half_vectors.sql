-- memmesh schema 16: vectors are stored as pgvector's halfvec (float16), half the bytes of
-- vector (float32), as on SQLite. The per-dimension HNSW indexes were built on
-- embedding::vector(dim); they are dropped and rebuilt on embedding::halfvec(dim) with
-- halfvec_cosine_ops (halfvec indexes up to 4,000 dimensions).
DO $$
DECLARE
    r record;
    dims integer[] := '{}';
BEGIN
    FOR r IN SELECT indexname FROM pg_indexes
             WHERE tablename = 'vectors' AND schemaname = current_schema() AND indexname LIKE 'vectors\_hnsw\_%' LOOP
        dims := dims || substring(r.indexname from 'vectors_hnsw_([0-9]+)$')::integer;
        EXECUTE format('DROP INDEX %I', r.indexname);
    END LOOP;
    ALTER TABLE vectors ALTER COLUMN embedding TYPE halfvec USING embedding::halfvec;
    FOR i IN 1 .. coalesce(array_length(dims, 1), 0) LOOP
        EXECUTE format(
            'CREATE INDEX vectors_hnsw_%s ON vectors USING hnsw ((embedding::halfvec(%s)) halfvec_cosine_ops) WHERE dim = %s',
            dims[i], dims[i], dims[i]);
    END LOOP;
END
$$;
