"""PostgreSQL only: many nodes on one database, serialised writes across processes, and
the errors a user meets when the server, the role or the schema is not right."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest

from memmesh import Memory
from memmesh.errors import CorruptDatabaseError, InvalidInputError, StorageError, UnavailableError
from memmesh.store import open_store
from memmesh.store.postgres import WRITE_LOCK_KEY, redact_url

pytestmark = pytest.mark.postgres


def test_a_write_on_one_node_is_seen_by_another_at_once(pg_database: str, open_memory: Callable[..., Memory]) -> None:
    node_a = open_memory(pg_database)
    node_b = open_memory(pg_database)
    stored = node_a.add("the deploy key rotates every Friday", namespace="ops", tags=["deploy"])
    assert node_b.get(stored.id) == stored
    assert [h.memory.id for h in node_b.search("when does the deploy key rotate?")] == [stored.id]
    node_b.update(stored.id, content="the deploy key rotates every Monday")
    assert node_a.get(stored.id).content == "the deploy key rotates every Monday"
    # Both nodes share one change counter and one node id (the database's).
    assert node_a.service.store.change_counter() == node_b.service.store.change_counter()
    assert node_a.service.node_id == node_b.service.node_id


UPDATER = textwrap.dedent("""
    import sys
    from memmesh import Memory
    from memmesh.config import load_settings
    url, memory_id, worker, count, data_dir = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    settings = load_settings(None, overrides={"data_dir": data_dir, "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    with Memory(url, settings) as mem:
        for i in range(count):
            mem.update(memory_id, content=f"worker {worker} update {i}")
    print("done")
""")


@pytest.mark.slow
def test_concurrent_updates_from_several_processes_are_serialised(
    pg_database: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    mem = open_memory(pg_database)
    target = mem.add("counter start", tier="long")  # the workers run on the real clock
    script = tmp_path / "updater.py"
    script.write_text(UPDATER)
    workers, per_worker = 3, 12
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), pg_database, target.id, str(w), str(per_worker), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    final = mem.get(target.id)
    # Every update read the latest version inside the lock: no increment was lost.
    assert final.version.clock[final.version.node] == 1 + workers * per_worker
    updates = [e for e in mem.history(target.id) if e.event.value == "update"]
    assert len(updates) == workers * per_worker
    assert {e.new["content"] for e in updates} == {f"worker {w} update {i}" for w in range(workers) for i in range(per_worker)}


def test_unreachable_server_names_the_host(tmp_path: Path) -> None:
    with pytest.raises(UnavailableError) as err:
        open_store("postgresql://memmesh:secret@127.0.0.1:1/memdb?connect_timeout=3")
    message = err.value.message
    assert "memmesh@127.0.0.1:1/memdb" in message and "running" in message
    assert "secret" not in message


def test_unreachable_server_from_the_cli_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_CONFIG": str(tmp_path / "none.toml"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"})
    (tmp_path / "none.toml").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", "postgresql://u:pw@127.0.0.1:1/x?connect_timeout=3", "stats"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot connect to PostgreSQL at u@127.0.0.1:1/x")
    assert "Traceback" not in proc.stderr and "pw" not in proc.stderr.replace("PostgreSQL", "")


def test_a_role_that_cannot_create_pgvector_is_told_what_to_do(pg_server) -> None:
    name = pg_server.create_database("noext")
    role = f"plain_{name[-8:]}"
    try:
        pg_server.execute(name, f'CREATE ROLE "{role}" LOGIN')
        pg_server.execute(name, f'GRANT ALL ON SCHEMA public TO "{role}"')
        url = pg_server.dsn_for(name).replace("user=postgres", f"user={role}")
        with pytest.raises(StorageError) as err:
            open_store(url)
        assert "CREATE EXTENSION vector" in err.value.message and "superuser" in err.value.message
        assert pg_server.execute(name, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    finally:
        pg_server.drop_database(name)
        pg_server.execute("postgres", f'DROP ROLE IF EXISTS "{role}"')


def test_a_newer_schema_is_refused(pg_database: str, pg_server) -> None:
    open_store(pg_database).close()
    dbname = pg_database.split("?")[0].rsplit("/", 1)[1]
    pg_server.execute(dbname, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(CorruptDatabaseError) as err:
        open_store(pg_database)
    assert "schema version 99" in err.value.message and "upgrade memmesh" in err.value.message


def test_a_database_of_another_application_is_refused(pg_database: str, pg_server) -> None:
    dbname = pg_database.split("?")[0].rsplit("/", 1)[1]
    pg_server.execute(dbname, "CREATE TABLE memories (id int)")
    with pytest.raises(CorruptDatabaseError) as err:
        open_store(pg_database)
    assert "did not create" in err.value.message
    assert pg_server.execute(dbname, "SELECT to_regclass('meta') IS NULL") == [(True,)]


def test_nul_characters_are_bad_input_and_nothing_is_stored(pg_database: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(pg_database)
    with pytest.raises(InvalidInputError) as err:
        mem.add("before\x00after")
    assert "NUL" in err.value.message
    assert mem.stats().total == 0


def test_a_locked_memory_times_out_with_try_again_and_other_writes_go_on(pg_database: str, open_memory: Callable[..., Memory]) -> None:
    """Writers lock only what they touch: a transaction holding one memory (and the old
    cluster-wide advisory lock, which writers no longer take) delays only writes of that memory."""
    mem = open_memory(pg_database, storage={"busy_timeout_ms": 300})
    target = mem.add("the memory another transaction holds")
    with psycopg.connect(pg_database, autocommit=False) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
        holder.execute("SELECT 1 FROM memories WHERE id = %s FOR UPDATE", (target.id,))
        other = mem.add("a write of another memory goes through")
        mem.update(other.id, content="and so does its update")
        with pytest.raises(UnavailableError) as err:
            mem.update(target.id, content="blocked write")
        assert "same memory" in err.value.message and "try again" in err.value.message
        holder.rollback()
    assert mem.get(target.id).content == "the memory another transaction holds"
    assert [e.event.value for e in mem.history(target.id)] == ["add"]
    assert mem.update(target.id, content="now it goes through").content == "now it goes through"


def test_passwords_never_show_in_the_store_url() -> None:
    assert redact_url("postgresql://app:s3cret@db.example:5432/mem") == "postgresql://app:***@db.example:5432/mem"
    assert redact_url("postgresql://app@db.example/mem") == "postgresql://app@db.example/mem"


@pytest.mark.parametrize("ann_index", [True, False])
def test_hnsw_index_follows_pg_ann_index_and_vectors_are_kept_exactly(pg_database: str, ann_index: bool) -> None:
    """storage.pg_ann_index (on by default) makes one HNSW index per vector size; off, none.
    Either way stored vectors round-trip bit for bit (values float16 holds exactly: schema 16
    stores halfvec)."""
    vector = np.array([0.5, 0.25, -0.125, 3.0], dtype=np.float32)
    store = open_store(pg_database, ann_index=ann_index)
    try:
        with store.write() as tx:
            tx.put_vector("m1", "model-a", vector, tx.next_seq())
        with psycopg.connect(pg_database) as conn:
            indexes = [r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'vectors'")]
        assert ("vectors_hnsw_4" in indexes) is ann_index
        assert store.get_vectors(["m1"])[0].vector.tobytes() == vector.tobytes()
    finally:
        store.close()


def test_a_schema_4_database_upgrades_with_its_change_numbers_and_vectors(pg_database: str, open_memory: Callable[..., Memory]) -> None:
    """Schema 5 replaces the meta counter with a sequence and adds transaction ids to the
    vector feed; a database written by schema 4 keeps counting from where it was, and its
    stored vectors are delivered to followers."""
    from memmesh.store.postgres import MIGRATIONS

    with psycopg.connect(pg_database, autocommit=True) as conn:
        for number, _name, sql in MIGRATIONS:
            if number <= 4:
                conn.execute(sql)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', '4'), ('app', 'memmesh'), ('seq', '41'), ('node_id', 'old-node')"
        )
        conn.execute("INSERT INTO vectors (memory_id, model, dim, embedding, seq) VALUES ('v1', 'm', 3, '[1,0,0]', 41)")
    store = open_store(pg_database)
    try:
        assert store.schema_version == MIGRATIONS[-1][0]
        assert store.change_counter() == 41
        with store.write() as tx:
            assert tx.next_seq() == 42
        assert [r.memory_id for r in store.vector_changes(0).upserts] == ["v1"]
        assert store.node_id() == "old-node"
        assert "change counter" not in store.integrity_check()  # the sequence is not behind the stored numbers
    finally:
        store.close()
    assert open_memory(pg_database).add("written after the upgrade").content == "written after the upgrade"


def postgres_latest_schema() -> int:
    """The newest schema number this memmesh ships (grows as migrations are added)."""
    from memmesh.store.postgres import LATEST_SCHEMA

    return LATEST_SCHEMA
