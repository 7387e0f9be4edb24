"""Whether this process may write a file or folder, and if not, why and how to fix it.

A permission problem must be told as one, with the command that fixes it: the SQLite store
checks its file, its folder and SQLite's ``-wal``/``-shm`` files here before SQLite opens
them (SQLite's own words, "unable to open database file", read as a damaged database), and
the settings name the user a secret file must belong to; a write that found no room says
which limit it met (:func:`no_room`). This module imports nothing of memmesh, so the stores,
the configuration and the CLI can all use it.
"""

from __future__ import annotations

import errno
import os
import shlex
import stat
from pathlib import Path
from typing import NamedTuple

NO_ROOM = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file grew past the largest file this process may write (ulimit -f)",
}
"""Why a write found no room, by errno: not something a different path would fix."""


def full_path(text: str) -> str:
    """``text`` as the absolute path the OS opens: ``~`` expanded, made absolute against the
    working directory, ``.``, ``..`` and doubled slashes taken out (lexically, as ``cd`` does:
    symlinks are not resolved). Messages then show ``/tmp/cf/r.db``, not
    ``/tmp/cf/../cf/r.db``, and SQLite, which refuses a path with more ``..`` than folders
    (``/tmp/../../x.db``: "unable to open database file"), opens the file the OS would."""
    return os.path.abspath(os.path.expanduser(text))


def no_room(exc: OSError) -> str | None:
    """Which limit a failed write met (``the disk is full``), or None when it failed for
    another reason (a bad path, a permission)."""
    return NO_ROOM.get(exc.errno or 0)


class WriteDenied(NamedTuple):
    """Why a path cannot be written (``is on a read-only file system``) and the fix (``run `chmod u+w …```)."""

    why: str
    fix: str


def user_name(uid: int) -> str:
    """The login name of ``uid`` (its number where it has none, or off POSIX)."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def cannot_write(path: Path) -> WriteDenied | None:
    """None when this process may write ``path`` (for a folder: create and remove files in
    it); else why not and what to run. Asks the kernel (``access``), so a read-only mount,
    an ACL or a missing capability count as they would for the write itself."""
    wanted = os.W_OK | (os.X_OK if path.is_dir() else 0)
    if os.access(path, wanted):
        return None
    quoted = shlex.quote(str(path))
    try:
        if hasattr(os, "statvfs") and os.statvfs(path).f_flag & os.ST_RDONLY:  # POSIX only
            return WriteDenied("is on a read-only file system", "remount it read-write")
        info = path.stat()
    except OSError as exc:
        return WriteDenied(f"cannot be checked ({exc.strerror})", f"check that {quoted} exists and can be reached")
    me = user_name(os.geteuid())
    why = f"is not writable by user {me} (owner {user_name(info.st_uid)}, mode {stat.S_IMODE(info.st_mode):04o})"
    if info.st_uid == os.geteuid():
        return WriteDenied(why, f"run `chmod u+w {quoted}`")
    return WriteDenied(why, f"run `chown {shlex.quote(me)} {quoted} && chmod u+w {quoted}` (or run memmesh as {user_name(info.st_uid)})")
