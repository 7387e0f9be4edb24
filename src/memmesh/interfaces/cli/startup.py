"""Ctrl-C while the ``memmesh`` command is still loading: exit 130 quietly.

Loading the commands (typer, the core and their libraries) takes a second or more, and
Ctrl-C in that time printed a KeyboardInterrupt traceback from the middle of whatever was
being imported. ``app.py`` imports this module before anything else (``import memmesh`` is
light: it loads the core on first use), so from here until :func:`loaded` Ctrl-C ends the
command with exit code 130, the shell's code for Ctrl-C, and prints nothing; :func:`loaded`,
called once the command's own module is imported (lazy.py), then puts Python's own handler
back, and each command treats Ctrl-C as it always has.

Only the main thread can take signals, and a SIGINT that is ignored (a job started in the
background by a non-interactive shell) or handled by someone else is left as it is.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

INTERRUPTED = 130
"""128 + SIGINT: what a shell reports for a command stopped by Ctrl-C."""


def _quiet(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(INTERRUPTED)


def _take() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False
    signal.signal(signal.SIGINT, _quiet)
    return True


_taken = _take()


def loaded() -> None:
    """The command is imported: Ctrl-C is Python's KeyboardInterrupt again."""
    if _taken and signal.getsignal(signal.SIGINT) is _quiet:
        signal.signal(signal.SIGINT, signal.default_int_handler)
