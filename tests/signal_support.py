"""Child processes that a test stops with SIGINT (Ctrl-C).

A POSIX shell starts a background job of a script (`bash .ci/run &`, `(cmd &)`) with SIGINT
and SIGQUIT ignored, and every descendant inherits that: pytest, then each subprocess a test
starts. Python then installs no KeyboardInterrupt handler, and a SIGINT the test sends does
nothing. A test that sends SIGINT therefore sets the child's disposition itself, so it
passes the same in a terminal and in a CI job started in the background.
"""

from __future__ import annotations

import signal
from collections.abc import Callable


def sigint_disposition(handler: signal.Handlers) -> Callable[[], None]:
    """A ``preexec_fn`` that starts the child with SIGINT at ``handler``, whatever this
    process inherited: ``SIG_DFL`` as from a terminal, ``SIG_IGN`` as a job a script started
    in the background. (``restore_signals`` resets SIGPIPE, SIGXFZ and SIGXFSZ only.)"""

    def preexec() -> None:
        signal.signal(signal.SIGINT, handler)

    return preexec


AS_FROM_A_TERMINAL = sigint_disposition(signal.SIG_DFL)
AS_A_BACKGROUND_JOB = sigint_disposition(signal.SIG_IGN)
