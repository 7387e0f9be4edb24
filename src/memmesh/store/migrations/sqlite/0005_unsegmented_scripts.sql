-- memmesh schema 5: keyword search in scripts written without spaces (Chinese, Japanese, Thai, …).
-- Every character and every adjacent pair of characters of each such run, from title,
-- content and tags (memmesh.recall.segment). The SQL functions are registered by memmesh on
-- every connection, so a tool without them cannot change memories behind the index's back.
CREATE VIRTUAL TABLE memories_cjk USING fts5(uni, bi, content='', tokenize='ascii');
INSERT INTO memories_cjk(rowid, uni, bi)
    SELECT rowid, memmesh_unigrams(title, content, tags), memmesh_bigrams(title, content, tags) FROM memories
    WHERE memmesh_unigrams(title, content, tags) != '';
CREATE TRIGGER memories_cjk_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_cjk(rowid, uni, bi)
        SELECT new.rowid, memmesh_unigrams(new.title, new.content, new.tags), memmesh_bigrams(new.title, new.content, new.tags)
        WHERE memmesh_unigrams(new.title, new.content, new.tags) != '';
END;
CREATE TRIGGER memories_cjk_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_cjk(memories_cjk, rowid, uni, bi)
        SELECT 'delete', old.rowid, memmesh_unigrams(old.title, old.content, old.tags), memmesh_bigrams(old.title, old.content, old.tags)
        WHERE memmesh_unigrams(old.title, old.content, old.tags) != '';
END;
CREATE TRIGGER memories_cjk_update AFTER UPDATE OF title, content, tags ON memories BEGIN
    INSERT INTO memories_cjk(memories_cjk, rowid, uni, bi)
        SELECT 'delete', old.rowid, memmesh_unigrams(old.title, old.content, old.tags), memmesh_bigrams(old.title, old.content, old.tags)
        WHERE memmesh_unigrams(old.title, old.content, old.tags) != '';
    INSERT INTO memories_cjk(rowid, uni, bi)
        SELECT new.rowid, memmesh_unigrams(new.title, new.content, new.tags), memmesh_bigrams(new.title, new.content, new.tags)
        WHERE memmesh_unigrams(new.title, new.content, new.tags) != '';
END;
