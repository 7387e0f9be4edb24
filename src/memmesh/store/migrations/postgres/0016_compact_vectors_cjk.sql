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

-- Keyword search in scripts written without spaces (Chinese, Japanese, Thai, …), as SQLite's
-- schema 5: the `english` tsvector keeps "東京オフィスのWi" as one token, so 東京 found
-- nothing. memories.cjk holds, as lexemes, 'u' + every character and 'b' + every adjacent
-- pair of characters of each such run, plus 'u' + the lower-cased pieces of words glued to
-- a run (the Wi of …のWi-Fi); memmesh.recall.segment.tsquery_text turns a query into the
-- same lexemes. The character ranges are those of memmesh.recall.segment._RANGES.
CREATE OR REPLACE FUNCTION memmesh_ngrams(title text, content text, tags text[]) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    run_re constant text := '[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\uac00-\ud7af\u1100-\u11ff\u3130-\u318f\u0e00-\u0e7f\u0e80-\u0eff\u1780-\u17ff\u1000-\u109f\U00020000-\U0002ffff]+';
    word_re constant text := '[[:alnum:]_\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\uac00-\ud7af\u1100-\u11ff\u3130-\u318f\u0e00-\u0e7f\u0e80-\u0eff\u1780-\u17ff\u1000-\u109f\U00020000-\U0002ffff]+';
    src text;
    run text;
    word text;
    piece text;
    n integer;
    lexemes text[] := '{}';
BEGIN
    FOREACH src IN ARRAY ARRAY[coalesce(title, ''), content, coalesce(array_to_string(tags, ' '), '')] LOOP
        IF src !~ run_re THEN
            CONTINUE;
        END IF;
        FOR run IN SELECT m[1] FROM regexp_matches(src, '(' || run_re || ')', 'g') AS m LOOP
            n := length(run);
            FOR i IN 1 .. n LOOP
                lexemes := lexemes || ('u' || substr(run, i, 1));
                IF i < n THEN
                    lexemes := lexemes || ('b' || substr(run, i, 2));
                END IF;
            END LOOP;
        END LOOP;
        FOR word IN SELECT w[1] FROM regexp_matches(src, '(' || word_re || ')', 'g') AS w LOOP
            IF word ~ run_re THEN
                FOREACH piece IN ARRAY regexp_split_to_array(word, run_re) LOOP
                    IF piece <> '' THEN
                        lexemes := lexemes || ('u' || lower(piece));
                    END IF;
                END LOOP;
            END IF;
        END LOOP;
    END LOOP;
    IF cardinality(lexemes) = 0 THEN
        RETURN ''::tsvector;
    END IF;
    -- Positions (capped at tsvector's 16383) so ts_rank_cd can rank them; at most 256 per lexeme.
    RETURN (
        SELECT string_agg(format('''%s'':%s', replace(replace(l, '\', '\\'), '''', ''''''), ps), ' ')::tsvector
        FROM (
            SELECT l, string_agg(least(p, 16383)::text, ',' ORDER BY p) FILTER (WHERE r <= 256) AS ps
            FROM (SELECT l, p, row_number() OVER (PARTITION BY l ORDER BY p) AS r FROM unnest(lexemes) WITH ORDINALITY AS t(l, p)) AS numbered
            GROUP BY l
        ) AS grouped
    );
END
$$;

CREATE OR REPLACE FUNCTION memmesh_memories_cjk() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.cjk := memmesh_ngrams(NEW.title, NEW.content, NEW.tags);
    RETURN NEW;
END
$$;

ALTER TABLE memories ADD COLUMN IF NOT EXISTS cjk tsvector NOT NULL DEFAULT '';
UPDATE memories SET cjk = memmesh_ngrams(title, content, tags)
    WHERE memmesh_ngrams(title, content, tags) <> ''::tsvector;
DROP TRIGGER IF EXISTS memories_cjk ON memories;
CREATE TRIGGER memories_cjk BEFORE INSERT OR UPDATE OF title, content, tags ON memories
    FOR EACH ROW EXECUTE FUNCTION memmesh_memories_cjk();
CREATE INDEX IF NOT EXISTS memories_cjk ON memories USING gin (cjk);
