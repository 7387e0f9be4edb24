"""PostgreSQL audit appends outside a transaction are grouped (issue 24: ≥ 3,000 durable
appends/s): concurrent ``audit.record`` calls of one process share one transaction, one
statement and one flush wait, and keep every guarantee of docs/audit.md.

On a private cluster with PostgreSQL's durable defaults (the harness of
test_pg_append_flush.py), checked with counts, never timings:

- concurrent records share transactions (distinct ``xmin`` of the rows < appends), each caller
  answered with its own entry's index;
- threads of two OS processes append to one chain that verifies, every answered index holding
  the entry its caller appended;
- kill -9 of an 8-thread appender, then a crash stop of the server: the chain verifies and
  every acknowledged index is there with its entry; no checkpoint covers more than the log;
- a failed group fails every entry in it and writes none of them; the chain goes on.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_pg_append_flush import Cluster, _settings, durable_cluster

from memmesh import Memory
from memmesh.audit.capture import Pending, unwrap
from memmesh.errors import MemmeshError
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.store.audit_sql import AUDIT_LOCK_KEY


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with durable_cluster("memmesh-test-pg-group") as made:
        yield made


def _entries(cluster: Cluster, name: str) -> dict[int, str | None]:
    """index → target of every stored entry (read straight from the database)."""
    with cluster.admin(name) as conn:
        return {int(i): t for i, t in conn.execute("SELECT idx, target FROM audit_log").fetchall()}


def _record_from_threads(mem: Memory, threads: int, each: int, tag: str) -> list[tuple[int, str]]:
    """``threads`` threads × ``each`` records; the (index, target) each call was answered with."""
    answered: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def append(k: int) -> None:
        start.wait()
        try:
            for i in range(each):
                target = f"{tag}-{k}-{i}"
                index = mem.service.audit.record("group.append", principal=LOCAL_PRINCIPAL, target=target)
                with lock:
                    answered.append((index, target))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=append, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors, errors
    return answered


def test_concurrent_records_share_transactions_and_each_gets_its_own_index(cluster: Cluster, tmp_path: Path) -> None:
    """Each flush waits 20 ms for company here (``commit_delay``), so groups form whatever this
    machine's load: one transaction per append (as before the group commit) would leave as many
    distinct ``xmin`` as entries."""
    name, url = cluster.database()
    with cluster.admin() as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET commit_delay = 20000')
        conn.execute(f'ALTER DATABASE "{name}" SET commit_siblings = 0')
    threads, each = 8, 25
    with Memory(url, _settings(tmp_path)) as mem:
        before = mem.service.audit.group.batches
        assert mem.service.audit.record("warm.up", principal=LOCAL_PRINCIPAL) == 0  # a lone caller: its own group,
        assert mem.service.audit.group.batches == before + 1  # written at once (nothing waits for company)
        answered = _record_from_threads(mem, threads, each, "share")
        report = mem.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok and report.size == 1 + threads * each, report
        assert mem.service.audit.group.batches - before - 1 <= threads * each // 2
    stored = _entries(cluster, name)
    assert sorted(i for i, _ in answered) == list(range(1, 1 + threads * each))
    assert all(stored[i] == target for i, target in answered), "an answered index holds another caller's entry"
    with cluster.admin(name) as conn:
        transactions = int(conn.execute("SELECT count(DISTINCT xmin::text) FROM audit_log WHERE idx > 0").fetchone()[0])
    appends = threads * each
    assert transactions <= appends // 2, f"{transactions} transactions for {appends} concurrent appends"


APPENDER = textwrap.dedent(
    """
    import sys, threading
    from memmesh import Memory
    from memmesh.config import load_settings
    from memmesh.model import LOCAL_PRINCIPAL
    url, data, tag, threads, each = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    audit_cfg = {}
    if len(sys.argv) > 6:
        audit_cfg = {"signing_key_file": sys.argv[6], "checkpoint_dir": sys.argv[7], "checkpoint_interval_s": 0.05,
                     "checkpoint_every": 20}
    settings = load_settings(None, overrides={"data_dir": data, "embeddings": {"provider": "none"}, "audit": audit_cfg},
        env={"MEMMESH_CONFIG": ""})
    mem = Memory(url, settings)
    mem.service.audit.start()
    lock = threading.Lock()
    go = threading.Event()

    def writer(k):
        go.wait()
        i = 0
        while each < 0 or i < each:
            target = f"{tag}-{k}-{i}"
            index = mem.service.audit.record("group.append", principal=LOCAL_PRINCIPAL, target=target)
            with lock:
                sys.stdout.write(f"{index} {target}\\n")
                sys.stdout.flush()
            i += 1

    workers = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(threads)]
    for t in workers:
        t.start()
    print("ready", flush=True)
    sys.stdin.readline()
    go.set()
    for t in workers:
        t.join()
    mem.close()
    """
)


def _acked(lines: list[str]) -> list[tuple[int, str]]:
    found = []
    for line in lines:
        index, _, target = line.strip().partition(" ")
        if target:
            found.append((int(index), target))
    return found


def test_threads_of_two_processes_append_to_one_verifying_chain(cluster: Cluster, tmp_path: Path) -> None:
    name, url = cluster.database()
    threads, each = 8, 30
    with Memory(url, _settings(tmp_path)) as mem:
        mem.service.audit.record("warm.up", principal=LOCAL_PRINCIPAL)  # the schema, before two processes open it
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, url, str(tmp_path), f"p{k}", str(threads), str(each)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=240) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    answered = [pair for out, _ in outputs for pair in _acked(out.splitlines())]
    assert len(answered) == 2 * threads * each
    stored = _entries(cluster, name)
    assert sorted(i for i, _ in answered) == list(range(1, 1 + 2 * threads * each)), "indexes are not dense and unique"
    assert all(stored[i] == target for i, target in answered), "an answered index holds another caller's entry"
    with Memory(url, _settings(tmp_path)) as mem:
        report = mem.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok and report.size == 1 + 2 * threads * each, report


def test_kill9_of_a_grouped_appender_and_a_server_crash_lose_no_acknowledged_entry(cluster: Cluster, tmp_path: Path) -> None:
    name, url = cluster.database()
    settings = _settings(tmp_path, signed=True)
    assert settings.audit.signing_key_file is not None and settings.audit.checkpoint_dir is not None
    acked: list[tuple[int, str]] = []
    for round_ in range(2):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                APPENDER,
                url,
                str(tmp_path),
                f"r{round_}",
                "8",
                "-1",
                str(settings.audit.signing_key_file),
                str(settings.audit.checkpoint_dir),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        seen: list[str] = []
        reader = threading.Thread(target=lambda out=proc.stdout, seen=seen: seen.extend(out), daemon=True)
        reader.start()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while len(seen) < 400 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        assert len(seen) >= 400, proc.stderr.read() if proc.stderr else ""
        acked.extend(_acked(seen))
        if round_ == 1:
            cluster.crash()  # the server too: what it acknowledged must be in its WAL
    stored = _entries(cluster, name)
    lost = [(i, t) for i, t in acked if stored.get(i) != t]
    assert not lost, f"{len(lost)} acknowledged entries are missing or differ, e.g. {lost[:3]}"
    with Memory(url, settings) as mem:
        report = mem.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok, report.problems
        assert report.checkpoints_checked > 0 and report.latest_checkpoint <= report.size


def test_a_failed_group_fails_every_entry_in_it_and_writes_none(cluster: Cluster, tmp_path: Path) -> None:
    """The chain's lock is held from outside while a first caller (alone in its group) waits
    for it and eight more queue behind it; they form the next group, and one entry in it is
    refused by a trigger: all eight fail, none is stored, and the chain goes on."""
    name, url = cluster.database()
    with Memory(url, _settings(tmp_path)) as mem:
        audit = mem.service.audit
        audit.record("warm.up", principal=LOCAL_PRINCIPAL)
        with cluster.admin(name) as conn:
            conn.execute(
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.target = 'poison' THEN RAISE EXCEPTION 'poisoned audit entry'; END IF; RETURN NEW; END $$"
            )
            conn.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_poison()")
        outcomes: dict[str, object] = {}

        def append(target: str) -> None:
            try:
                outcomes[target] = audit.record("group.append", principal=LOCAL_PRINCIPAL, target=target)
            except MemmeshError as exc:
                outcomes[target] = exc

        with cluster.admin(name) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (AUDIT_LOCK_KEY,))
            first = threading.Thread(target=append, args=("first",))
            first.start()
            deadline = time.monotonic() + 60
            while audit.group.batches < 2 and time.monotonic() < deadline:  # the warm-up's group, then the first's
                time.sleep(0.01)
            waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            while holder.execute(waiting).fetchone()[0] < 1:  # the first is in its statement, waiting for the lock
                assert time.monotonic() < deadline, "the first append never waited for the lock"  # (not a guessed 0.2 s)
                time.sleep(0.01)
            targets = ["poison", *(f"ok-{k}" for k in range(7))]
            queued = [threading.Thread(target=append, args=(t,)) for t in targets]
            for t in queued:
                t.start()
            while len(audit.group._queue) < len(targets) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(audit.group._queue) == len(targets), "the callers did not queue behind the first group"
            holder.execute("SELECT pg_advisory_unlock(%s)", (AUDIT_LOCK_KEY,))
        for t in [first, *queued]:
            t.join(30)
        assert outcomes["first"] == 1, outcomes
        failed = {t: o for t, o in outcomes.items() if t != "first"}
        assert all(isinstance(o, MemmeshError) for o in failed.values()), failed
        assert all("poisoned audit entry" in str(o) for o in failed.values()), failed
        assert audit.group.batches == 3, "the eight queued callers were not one group"
        assert _entries(cluster, name) == {0: None, 1: "first"}, "a failed group left some of its entries"
        assert audit.record("group.append", principal=LOCAL_PRINCIPAL, target="after") == 2
        report = audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok and report.size == 3, report


def test_a_group_chained_onto_a_head_another_process_took_goes_after_it(cluster: Cluster, tmp_path: Path) -> None:
    """Several entries in one statement (the group's): when another appender took the cached
    head's next index meanwhile, none of them goes in at a stale index (a multi-row
    ``ON CONFLICT DO NOTHING`` would have inserted the ones past the other's entries); they
    are chained onto the real head."""
    name, url = cluster.database()
    with Memory(url, _settings(tmp_path)) as first, Memory(url, _settings(tmp_path)) as other:
        assert first.service.audit.record("warm.up", principal=LOCAL_PRINCIPAL) == 0  # its head is cached now
        assert other.service.audit.record("other.append", principal=LOCAL_PRINCIPAL, target="o1") == 1
        assert other.service.audit.record("other.append", principal=LOCAL_PRINCIPAL, target="o2") == 2
        items = [Pending("group.append", f"g{k}", None, {"k": k}, "local") for k in range(3)]
        with unwrap(first.service.store).write() as tx:
            assert first.service.audit.append_many(tx, items) == 5
        report = first.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok and report.size == 6, report
    assert _entries(cluster, name) == {0: None, 1: "o1", 2: "o2", 3: "g0", 4: "g1", 5: "g2"}
