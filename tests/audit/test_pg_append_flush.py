"""PostgreSQL audit appends do not hold the chain's lock through the disk flush (issue 24:
≥ 3,000 durable appends/s), and stay durable and verifiable.

On a server whose commits wait for a disk flush, an audited write's transaction commits
asynchronously (the chain lock is released once its commit record is in the WAL) and the
writer then waits for the WAL flush before it is answered, so concurrent appenders share
flushes instead of taking turns at one flush each. These tests run on a private cluster with
PostgreSQL's durable defaults (``fsync`` and ``synchronous_commit`` on; the shared test
cluster has both off, where nothing is split) and check, with counts rather than timings:

- concurrent appends share disk flushes (``pg_stat_wal.wal_sync`` well below the appends, with
  ``commit_delay`` making each flush wait for company: it was one flush per append while the
  lock was held through the commit);
- an acknowledged append is flushed when its write returns (the WAL writer's own flushes are
  pushed out to 10 s, so only the writer's wait can have flushed it);
- kill -9 of a process appending from 8 threads, then an immediate (crash) stop of the
  server: the chain verifies, every acknowledged write is in it, and no checkpoint covers
  more entries than the log holds;
- a checkpoint flushes the WAL past what it read before it signs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from memmesh import Memory
from memmesh.audit.capture import unwrap
from memmesh.audit.notes import init_key
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL

PG_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pg_test_server.py"
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "wal_writer_delay": "10s"}


def _script(*args: str) -> str:
    done = subprocess.run([sys.executable, str(PG_SCRIPT), *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr  # fails, never skips, without PostgreSQL
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


class Cluster:
    """A private PostgreSQL with durable commits, for this module's tests."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.dsn = _script("ensure", "--dir", str(folder))
        os.chmod(folder, 0o755)
        with self.admin() as conn:
            for key, value in DURABLE.items():
                conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
        self.restart()

    def admin(self, dbname: str | None = None) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, **({"dbname": dbname} if dbname else {}))

    def restart(self) -> None:
        _script("stop", "--dir", str(self.folder))
        _script("start", "--dir", str(self.folder))

    def crash(self) -> None:
        """An immediate shutdown (SIGQUIT to the postmaster): no shutdown checkpoint, the next
        start replays the WAL, as after a crash of the server."""
        with self.admin() as conn:
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        pid = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 30
        while Path(data_dir, "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        _script("start", "--dir", str(self.folder))

    def database(self) -> tuple[str, str]:
        import psycopg

        name = f"mm_flush_{uuid.uuid4().hex[:10]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(self.dsn).items() if k != "dbname" and v not in (None, "")}
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(params.items()))
        return name, f"postgresql:///{name}?{query}"


@contextmanager
def durable_cluster(prefix: str) -> Iterator[Cluster]:
    """A private cluster whose commits wait for the disk (fsync and synchronous_commit on),
    stopped and removed afterwards."""
    folder = Path(f"/var/tmp/{prefix}-{uuid.uuid4().hex[:10]}")
    made = Cluster(folder)
    try:
        with made.admin() as conn:
            shown = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')").fetchall())
        assert shown == {"fsync": "on", "synchronous_commit": "on"}, shown
        yield made
    finally:
        subprocess.run([sys.executable, str(PG_SCRIPT), "stop", "--dir", str(folder)], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with durable_cluster("memmesh-test-pg-flush") as made:
        yield made


def _settings(tmp_path: Path, signed: bool = False) -> Any:
    audit = {}
    if signed:
        key = tmp_path / "signing.key"
        if not key.exists():
            init_key(key, "flush-test")
        audit = {"signing_key_file": str(key), "checkpoint_dir": str(tmp_path / "checkpoints")}
    return load_settings(
        None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}, "audit": audit}, env={"MEMMESH_CONFIG": ""}
    )


def _wal_syncs(cluster: Cluster) -> int:
    with cluster.admin() as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0])


def _backends_gone(cluster: Cluster, name: str) -> None:
    """Wait until no backend serves database ``name``: a backend reports its WAL counters as it
    exits, before it leaves pg_stat_activity (a fixed 1.2 s raced a loaded machine)."""
    deadline = time.monotonic() + 60
    with cluster.admin() as conn:
        while int(conn.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]):
            assert time.monotonic() < deadline, f"backends of {name} still running after 60 s"
            time.sleep(0.05)


def test_concurrent_appends_share_disk_flushes(cluster: Cluster, tmp_path: Path) -> None:
    """Each flush here first waits 20 ms for others to join it (``commit_delay``), so the count
    does not depend on this machine's load: a commit holding the chain lock through its flush
    has nobody to join it (one flush per append), an append flushed after the lock is released
    is joined by the other threads' appends."""
    name, url = cluster.database()
    with cluster.admin() as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET commit_delay = 20000')
        conn.execute(f'ALTER DATABASE "{name}" SET commit_siblings = 0')
    threads, each = 8, 25
    with Memory(url, _settings(tmp_path)) as mem:
        mem.service.audit.record("warm.up", principal=LOCAL_PRINCIPAL)  # the pool and the schema
        time.sleep(1.2)  # backends report their WAL counters at most once a second
        before = _wal_syncs(cluster)
        errors: list[BaseException] = []

        def append(k: int) -> None:
            try:
                for i in range(each):
                    mem.service.audit.record("flush.share", principal=LOCAL_PRINCIPAL, target=f"t{k}-{i}")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [threading.Thread(target=append, args=(k,)) for k in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert not errors, errors
        report = mem.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok and report.size == 1 + threads * each, report
    _backends_gone(cluster, name)  # the pool's connections closed: their backends reported at exit
    syncs = _wal_syncs(cluster) - before
    appends = threads * each
    # Holding the lock through each commit's flush made it one flush (or more) per append.
    assert 0 < syncs <= appends // 3, f"{syncs} WAL flushes for {appends} appends from {threads} threads"


def test_an_acknowledged_append_is_flushed_when_its_write_returns(cluster: Cluster, tmp_path: Path) -> None:
    """The WAL writer flushes on its own only every 10 s here: an append found flushed right
    after it returns was flushed by its writer's wait (an asynchronous commit without the
    wait would leave the WAL written past the flush point)."""
    _, url = cluster.database()
    flushed = 0
    with Memory(url, _settings(tmp_path)) as mem, cluster.admin() as probe:
        mem.add("warm up", namespace="flush")
        for i in range(20):
            mem.add(f"acknowledged write {i}", namespace="flush")
            row = probe.execute("SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()").fetchone()
            flushed += bool(row[0])
        report = mem.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok, report.problems
    # background WAL (a standby snapshot record every 15 s) may land between a write and the probe
    assert flushed >= 17, f"only {flushed} of 20 appends were on disk when their write returned"


APPENDER = textwrap.dedent(
    """
    import sys, threading
    from memmesh import Memory
    from memmesh.config import load_settings
    url, data, key, ck = sys.argv[1:5]
    settings = load_settings(None, overrides={"data_dir": data, "embeddings": {"provider": "none"},
        "audit": {"signing_key_file": key, "checkpoint_dir": ck, "checkpoint_interval_s": 0.05, "checkpoint_every": 20}},
        env={"MEMMESH_CONFIG": ""})
    mem = Memory(url, settings)
    mem.service.audit.start()
    lock = threading.Lock()

    def writer(k):
        i = 0
        while True:
            made = mem.add(f"crash w{k} #{i}", namespace=f"crash/{k}")
            with lock:
                sys.stdout.write(made.id + "\\n")
                sys.stdout.flush()
            i += 1

    for k in range(8):
        threading.Thread(target=writer, args=(k,), daemon=True).start()
    threading.Event().wait()
    """
)


def test_kill9_of_an_appender_and_a_server_crash_leave_a_verifying_log(cluster: Cluster, tmp_path: Path) -> None:
    _, url = cluster.database()
    settings = _settings(tmp_path, signed=True)
    assert settings.audit.signing_key_file is not None and settings.audit.checkpoint_dir is not None
    acked: list[str] = []
    for round_ in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-c", APPENDER, url, str(tmp_path), str(settings.audit.signing_key_file), str(settings.audit.checkpoint_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        seen: list[str] = []
        reader = threading.Thread(target=lambda out=proc.stdout, seen=seen: seen.extend(line.strip() for line in out), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while len(seen) < 150 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        assert len(seen) >= 150, proc.stderr.read() if proc.stderr else ""
        acked.extend(seen)
        if round_ == 1:
            cluster.crash()  # the server too: what it acknowledged must be in its WAL
    with Memory(url, settings) as mem:
        report = mem.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok, report.problems
        assert report.checkpoints_checked > 0 and report.latest_checkpoint <= report.size
        targets = {e.target for e in mem.service.audit.iter_entries(principal=LOCAL_PRINCIPAL)}
        missing = set(acked) - targets
        assert not missing, f"{len(missing)} acknowledged writes are not in the audit log"


def test_a_checkpoint_flushes_the_wal_past_what_it_signs(cluster: Cluster, tmp_path: Path) -> None:
    """An entry another reader sees may not be on disk yet (its writer still waiting for the
    flush): the checkpointer flushes the WAL past everything it read before it signs. Here a
    commit is left unflushed on purpose (asynchronous, the WAL writer idle for 10 s) and the
    checkpoint must not be written before the WAL is flushed past it."""
    name, url = cluster.database()
    with Memory(url, _settings(tmp_path, signed=True)) as mem:
        mem.add("signed after a flush", namespace="flush")
        with cluster.admin(name) as raw:
            raw.execute("SET synchronous_commit = off")
            raw.execute("CREATE TABLE IF NOT EXISTS unflushed (n int)")
            raw.execute("INSERT INTO unflushed VALUES (1)")
            written = raw.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
            before = raw.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (written,)).fetchone()[0]
            made = mem.service.audit.checkpoint(force=True)
            after = raw.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (written,)).fetchone()[0]
        assert made is not None and made.size >= 1
    assert not before, "the WAL was flushed already: the test proves nothing"
    assert after, "the checkpoint was signed while the WAL was not flushed past the entries it read"


def _statements_logged(log: Path, offset: int) -> list[str]:
    """Statements the server logged (``log_statement = all``) after ``offset`` bytes of its log."""
    with log.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode("utf-8", "replace")
    return [line.split("LOG:", 1)[1].strip() for line in text.splitlines() if "LOG:  statement:" in line or "LOG:  execute" in line]


def test_an_audit_only_write_costs_four_statements(cluster: Cluster, tmp_path: Path) -> None:
    """A write transaction that only appends (``service.audit.record``) sends BEGIN, the lock
    and insert, COMMIT and the flush wait: four statements, each a round trip. It also sent
    ``SELECT pg_current_xact_id()`` first (five), which only a change number needs: the
    change-number function takes the xid itself now (schema 25). Counted in the server's own
    statement log, so nothing the client does is left out."""
    name, url = cluster.database()
    with cluster.admin() as conn:
        conn.execute(f"ALTER DATABASE \"{name}\" SET log_statement = 'all'")
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    server_log = Path(data_dir, "server.log")
    appends = 20
    with Memory(url, _settings(tmp_path)) as mem:
        mem.service.audit.record("warm.up", principal=LOCAL_PRINCIPAL)
        mem.service.audit.record("warm.up", principal=LOCAL_PRINCIPAL)  # the head is cached from here on
        offset = server_log.stat().st_size
        for i in range(appends):
            mem.service.audit.record("count.statements", principal=LOCAL_PRINCIPAL, target=f"s{i}")
        # the server writes its log line before it answers, but its collector may lag: a marker
        # statement sent after the appends is logged after theirs; wait for it (not a fixed 0.3 s)
        marker = "SELECT 'every append before this is in the log'"
        with cluster.admin(name) as conn:
            conn.execute(marker)
        deadline = time.monotonic() + 60
        while True:
            logged = _statements_logged(server_log, offset)
            ends = [i for i, statement in enumerate(logged) if marker in statement]
            if ends:
                logged = logged[: ends[0]]
                break
            assert time.monotonic() < deadline, "the marker statement never reached the server's log"
            time.sleep(0.05)
        report = mem.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok, report.problems
    assert not [s for s in logged if "pg_current_xact_id" in s], logged[:8]
    assert len(logged) == 4 * appends, f"{len(logged)} statements for {appends} appends: {logged[:8]}"


def test_a_transaction_holding_a_change_number_counts_as_running_for_the_vector_feed(cluster: Cluster, tmp_path: Path) -> None:
    """The write transaction no longer takes its xid up front; a change number must still come
    with one (the vector feed reads "no transaction running" as "the counter covers all"), so
    a transaction that took a number and has written nothing yet holds the feed's cursor back."""
    name, url = cluster.database()
    with Memory(url, _settings(tmp_path)) as mem:
        store = unwrap(mem.service.store)
        idle = store.vector_changes(0)
        assert idle.seq >= 0, idle  # nothing running: the cursor is the counter
        with cluster.admin(name) as raw:
            raw.execute("SELECT memmesh_next_change()")  # the next nextval() is in the sequence's logged batch: it takes no xid
        with cluster.admin(name) as raw, raw.transaction():
            number = raw.execute("SELECT memmesh_next_change()").fetchone()[0]
            assert raw.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL").fetchone()[0]
            with cluster.admin(name) as other:  # a later transaction completes (a snapshot's xmax passes this one's xid)
                other.execute("SELECT pg_current_xact_id()")
            held = store.vector_changes(idle.seq)
            assert held.seq < 0, f"change number {number} is held by a running transaction, yet the feed says it covers all"


def _round_trips(trace: str) -> list[str]:
    """What the client sent per round trip, from a libpq trace: each round trip ends with a
    simple ``Query`` or a ``Sync`` from the client (F), after which it waits for the answer."""
    trips, current = [], []
    for line in trace.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0] != "F":
            continue
        current.append(" ".join(parts[2:]))
        if parts[2].startswith(("Query", "Sync")):
            trips.append(" ".join(current))
            current = []
    return trips


def test_an_audit_only_write_is_two_round_trips(cluster: Cluster, tmp_path: Path) -> None:
    """BEGIN sent with the lock and insert, then COMMIT and the flush wait sent in one network
    write (libpq pipeline mode, a Flush message between them so the commit's answer still
    comes first): two round trips per append, was five (BEGIN, the xid statement, the lock
    and insert, COMMIT, the flush). Counted in libpq's own trace of the store's one pooled
    connection."""
    import psycopg

    _, url = cluster.database()
    settings = _settings(tmp_path).model_copy(deep=True)
    settings.storage.pool_size = 1
    trace_file = tmp_path / "libpq.trace"
    with Memory(url, settings) as mem:
        mem.service.audit.record("warm.up", principal=LOCAL_PRINCIPAL)
        mem.service.audit.record("warm.up", principal=LOCAL_PRINCIPAL)  # the head is cached from here on
        store = unwrap(mem.service.store)
        with trace_file.open("w") as fh:
            conn = store._pool.getconn()
            try:
                conn.pgconn.trace(fh.fileno())
                conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
            finally:
                store._pool.putconn(conn)
            mem.service.audit.record("count.round.trips", principal=LOCAL_PRINCIPAL)
            conn = store._pool.getconn()
            try:
                conn.pgconn.untrace()
            finally:
                store._pool.putconn(conn)
        report = mem.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok and report.size == 3, report
    trips = _round_trips(trace_file.read_text())
    assert len(trips) == 2, trips
    # BEGIN and the lock-and-insert, prepared on the connection by an earlier append (not parsed again)
    assert "BEGIN" in trips[0] and "memmesh_first_" in trips[0] and "pg_advisory_xact_lock" not in trips[0], trips
    assert "COMMIT" in trips[-1] and "pg_logical_emit_message" in trips[-1], trips


def test_an_append_that_finds_its_cached_head_taken_is_still_flushed_before_it_returns(cluster: Cluster, tmp_path: Path) -> None:
    """Two stores (as two processes) appending in turn: each one's cached head is always one
    behind, so every append collides, finds the real head and inserts again. Its commit was
    made asynchronous by the first statement, so it owes the flush like any other: the second
    statement used to ask again whether to split, saw ``synchronous_commit`` already off, and
    answered no, so these appends were acknowledged before they were on disk."""
    _, url = cluster.database()
    flushed, rounds = 0, 10
    with Memory(url, _settings(tmp_path)) as one, Memory(url, _settings(tmp_path)) as two, cluster.admin() as probe:
        one.service.audit.record("warm.up", principal=LOCAL_PRINCIPAL)
        two.service.audit.record("warm.up", principal=LOCAL_PRINCIPAL)
        for i in range(rounds):
            for mem in (one, two):
                mem.service.audit.record("collide", principal=LOCAL_PRINCIPAL, target=f"c{i}")
                row = probe.execute("SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()").fetchone()
                flushed += bool(row[0])
        report = one.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok and report.size == 2 + 2 * rounds, report
    assert flushed >= 2 * rounds - 3, f"only {flushed} of {2 * rounds} colliding appends were on disk when they returned"
