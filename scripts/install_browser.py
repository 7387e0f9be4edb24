#!/usr/bin/env python3
"""Debian's headless Chromium and its WebDriver for the web inspector's end-to-end tests.

Why this exists: the tests drive a real browser, but must never download one from a browser
vendor (the machine is offline except for package registries). Debian ships ``chromium``
and ``chromium-driver`` from its own mirror, so this script installs those with apt-get
when ``/usr/bin/chromium`` or ``/usr/bin/chromedriver`` is missing (as root; otherwise it
says what to run). A file lock lets concurrent test runs share one installation.

Usage::

    scripts/install_browser.py ensure     # install if missing; print "CHROMIUM DRIVER" paths

Progress goes to stderr; the last line on stdout is the two paths. Exit status 1 with a
message that says what to do when the browser cannot be had (the tests then fail, not skip).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = Path(os.environ.get("MEMMESH_CHROMIUM") or "/usr/bin/chromium")
DRIVER = Path(os.environ.get("MEMMESH_CHROMEDRIVER") or "/usr/bin/chromedriver")
PACKAGES = ["chromium", "chromium-driver"]
LOCK = Path("/var/tmp/memmesh-install-browser.lock")


def _present() -> bool:
    return CHROMIUM.exists() and DRIVER.exists()


def _apt(*args: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"install_browser: apt-get {' '.join(args)}", file=sys.stderr)
    subprocess.run(["apt-get", *args], check=True, env=env, stdout=sys.stderr)


def ensure() -> tuple[Path, Path]:
    """The Chromium and chromedriver paths, installed from Debian's mirror when missing."""
    if _present():
        return CHROMIUM, DRIVER
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"install_browser: {CHROMIUM} or {DRIVER} is missing; run as root: apt-get install -y {' '.join(PACKAGES)}")
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second test run waits for the first install
        if not _present():
            try:
                _apt("install", "-y", "--no-install-recommends", *PACKAGES)
            except subprocess.CalledProcessError:
                _apt("update")  # a stale package list: refresh once, then try again
                _apt("install", "-y", "--no-install-recommends", *PACKAGES)
    if not _present():
        raise SystemExit(f"install_browser: apt-get ran but {CHROMIUM} or {DRIVER} is still missing")
    return CHROMIUM, DRIVER


def main(argv: list[str]) -> int:
    if argv[1:] != ["ensure"]:
        print(__doc__, file=sys.stderr)
        return 2
    chromium, driver = ensure()
    print(f"{chromium} {driver}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
