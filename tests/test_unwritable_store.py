"""A SQLite store this user cannot write is a permission problem, told with its fix.

SQLite writes the database file and creates ``<db>-wal`` and ``<db>-shm`` beside it. A
read-only folder used to read "… is not a usable SQLite database: unable to open database
file" (a damaged database, to a user whose data was fine); a read-only file opened, answered
reads, then failed every write. Both now stop at open with a config error (exit 1) naming
the file or folder and the command that fixes it, and leave the data file as it was.

The commands run in a subprocess whose file permissions are enforced: as ``nobody`` where
that user can run this interpreter; else (the test runs as root, for whom chmod denies
nothing, and the interpreter is out of ``nobody``'s reach) as root without the capabilities
that bypass file permissions (dropped from the bounding set, so the child never has them).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

NOBODY = 65534
PR_CAPBSET_DROP = 24
FILE_PERMISSION_CAPS = (1, 2, 3)
"""CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: what lets root ignore file modes."""


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _without_file_capabilities() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in FILE_PERMISSION_CAPS:
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@dataclass
class Unprivileged:
    """How to start a process that file modes hold back, and a folder it can reach."""

    preexec: Callable[[], None] | None
    work: Path

    def run(self, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """``memmesh --db DB ARGS`` as that process, with a clean environment and HOME."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
        env.update(
            HOME=str(self.work / "home"),
            MEMMESH_CONFIG=str(self.work / "none.toml"),
            MEMMESH_DATA_DIR=str(self.work / "home" / "data"),
            MEMMESH_EMBEDDINGS_PROVIDER="none",
            COLUMNS="250",
        )
        command = [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(db), *args]
        return subprocess.run(command, env=env, preexec_fn=self.preexec, capture_output=True, text=True, timeout=120, check=False)


def _held_back(preexec: Callable[[], None] | None, work: Path) -> bool:
    """Whether a process started so imports memmesh and is refused a write into a 0555 folder."""
    closed = work / "closed"
    closed.mkdir(mode=0o555, exist_ok=True)
    closed.chmod(0o555)
    probe = f"import memmesh\ntry:\n    open({str(closed / 'x')!r}, 'w')\nexcept PermissionError:\n    print('held back')"
    try:
        done = subprocess.run([sys.executable, "-c", probe], preexec_fn=preexec, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.stdout.strip() == "held back"


@pytest.fixture
def unprivileged() -> Iterator[Unprivileged]:
    """A way to run the CLI under enforced file permissions (see the module doc), or a skip."""
    work = Path(tempfile.mkdtemp(prefix="memmesh-unwritable-"))  # not under tmp_path: nobody cannot enter /tmp/pytest-of-root
    try:
        work.chmod(0o755)
        (work / "home").mkdir(mode=0o777)
        (work / "home").chmod(0o777)
        (work / "none.toml").write_text("")
        ways: list[Callable[[], None] | None] = [_as_nobody, _without_file_capabilities] if os.geteuid() == 0 else [None]
        for way in ways:
            if _held_back(way, work):
                yield Unprivileged(way, work)
                return
        pytest.skip(
            "cannot start a process that file modes hold back: root here can neither run this interpreter as nobody "
            "nor drop CAP_DAC_OVERRIDE"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _store_in(folder: Path) -> tuple[Path, bytes]:
    """A store with one memory in ``folder``, made by the CLI as this test's own user (its
    exit leaves no -wal/-shm behind), and its bytes."""
    folder.mkdir()
    db = folder / "memmesh.db"
    made = Unprivileged(None, folder.parent).run(db, "store", "Deploys are frozen on Fridays")
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("memmesh.db")) == ["memmesh.db"]
    return db, db.read_bytes()


def test_a_read_only_data_folder_is_named_with_the_fix_not_called_damaged(unprivileged: Unprivileged) -> None:
    folder = unprivileged.work / "data"
    db, before = _store_in(folder)
    db.chmod(0o666)  # the file itself is writable by anyone: only the folder is in the way
    folder.chmod(0o555)
    try:
        for args in (("store", "a new fact"), ("search", "deploys"), ("doctor",)):
            done = unprivileged.run(db, *args)
            said = done.stdout + done.stderr
            assert done.returncode == 1, (args, said)
            assert f"cannot open the database {db}: the folder {folder} is not writable by user " in said, (args, said)
            assert "SQLite must create memmesh.db-wal and memmesh.db-shm in it" in said and f"chmod u+w {folder}`" in said, said
            assert "damaged" not in said and "not a usable SQLite database" not in said and "Traceback" not in said, said
        assert "FAIL store: cannot open the database" in said  # doctor names it as the failed check
    finally:
        folder.chmod(0o755)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("memmesh.db")) == ["memmesh.db"]
    assert db.read_bytes() == before


def test_a_read_only_database_file_in_a_writable_folder_says_so(unprivileged: Unprivileged) -> None:
    folder = unprivileged.work / "data"
    db, before = _store_in(folder)
    folder.chmod(0o777)
    db.chmod(0o444)
    done = unprivileged.run(db, "store", "a new fact")
    assert done.returncode == 1, done
    assert done.stderr.startswith(f"error: cannot open the database {db}: the file {db} is not writable by user "), done.stderr
    assert "mode 0444" in done.stderr and f"chmod u+w {db}`" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    doctor = unprivileged.run(db, "doctor")
    assert doctor.returncode == 1 and f"FAIL store: cannot open the database {db}: the file {db} is not writable" in doctor.stdout, doctor
    assert db.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("memmesh.db")) == ["memmesh.db"]


def test_a_new_database_in_a_read_only_folder_is_refused_before_anything_is_made(unprivileged: Unprivileged) -> None:
    folder = unprivileged.work / "empty"
    folder.mkdir(mode=0o555)
    folder.chmod(0o555)
    db = folder / "memmesh.db"
    done = unprivileged.run(db, "store", "a new fact")
    assert done.returncode == 1, done
    assert done.stderr.startswith(f"error: cannot create the database {db}: the folder {folder} is not writable by user "), done.stderr
    assert "SQLite must create memmesh.db, memmesh.db-wal and memmesh.db-shm in it" in done.stderr, done.stderr
    assert list(folder.iterdir()) == []
    # doctor says the first write would fail, not that it "creates it"
    doctor = unprivileged.run(db, "doctor")
    said = doctor.stdout + doctor.stderr
    assert doctor.returncode == 1, said
    assert f"FAIL store: no memmesh database at {db}, and none can be created: the folder {folder} is not writable" in said
    assert f"chmod u+w {folder}`" in said and "first write" not in said and "Traceback" not in said, said
    assert list(folder.iterdir()) == []
