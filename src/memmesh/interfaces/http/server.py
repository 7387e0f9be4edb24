"""Running the HTTP app under uvicorn: bind checks, logging, workers, graceful shutdown.

``memmesh serve`` calls :func:`serve` with resolved Settings. With one worker the app is
built here and handed to uvicorn; with several, uvicorn spawns processes that each call
:func:`app_factory`, which reads the same settings back from ``MEMMESH_*`` variables that
:func:`serve` exported (the CLI flags included), so every worker serves the same config.

Each request must arrive within ``server.request_timeout_secs`` (see :mod:`.timeouts`).
SIGTERM/SIGINT stop the server gracefully: uvicorn stops accepting, long-polls answer at
once as empty polls (:mod:`.stopping`), requests in flight finish (up to
``GRACEFUL_SHUTDOWN_S``), the app's shutdown runs and the store closes; then the process
ends by the same signal, raised again with its default action (:func:`die_of`). A shell
sees 130 (Ctrl-C) or 143 (SIGTERM), a script running ``memmesh serve`` in the foreground
stops on Ctrl-C as it should, and systemd counts the stop as clean: its default
``SuccessExitStatus`` covers death by SIGINT and SIGTERM, while an exit *code* of 130 or
143 would mark the unit failed. A signal that arrives before uvicorn runs (while the
store opens) ends the process the same way. A SIGINT ignored when the process started (a
job a script started in the background) stays ignored (:func:`ignored_at_start`). A write
that got its 201 has committed before the response was sent.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from memmesh.compose import build, build_mesh
from memmesh.config import SECTIONS, Settings, load_settings
from memmesh.errors import ConfigError, NotFoundError
from memmesh.interfaces.http import logs
from memmesh.interfaces.http.app import create_app
from memmesh.interfaces.http.timeouts import protocol_for
from memmesh.service import Service

GRACEFUL_SHUTDOWN_S = 30


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses only this machine can reach."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys_exist: bool, insecure: bool) -> None:
    """Refuse to serve an unauthenticated store to the network (docs/http.md, "Authentication")."""
    if not is_loopback(host) and not keys_exist and not insecure:
        raise ConfigError(
            f"refusing to listen on {host} with no API keys: anyone who can reach it could read and write every memory. "
            "Create a key with `memmesh keys create --agent NAME --role writer`, bind to 127.0.0.1, or pass --insecure"
        )


def listen_on(host: str, port: int) -> socket.socket:
    """The listening socket uvicorn serves on, bound here before any store is opened, so a
    taken port fails with one clear line (uvicorn would bury the cause in its own log lines
    and exit 3). It is bound and listening at once, never a probe closed again: two ``serve``
    started together both passed such a probe, and the loser said "serving … at …" before
    uvicorn failed to bind. Port 0: the system picks one, and the start line names it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind((host.strip("[]"), port))
        sock.listen()  # on Linux, two sockets with SO_REUSEADDR may share a port until one listens
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use (another memmesh serve?); stop that process or pick another port with --port"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port") from None
    sock.set_inheritable(True)  # worker processes serve it too, as uvicorn's own socket
    return sock


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as Python raises KeyboardInterrupt for SIGINT, so
    both unwind the same way (closing the store) before the process dies of the signal."""


STOP_SIGNALS = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextmanager
def signals_unwind() -> Iterator[None]:
    """While serving, SIGTERM raises :class:`Terminated` (SIGINT already raises
    KeyboardInterrupt). uvicorn installs its own handlers over these while it runs and,
    after its graceful shutdown, raises the signal it caught again: into these."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread: nothing to arrange
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stopped_by(exc: BaseException) -> int:
    """The signal behind KeyboardInterrupt or :class:`Terminated`."""
    return signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT


def die_of(signum: int) -> None:
    """End the process by ``signum`` with its default action (what a supervisor and a shell
    expect of a process stopped by a signal), once everything is closed; where raising it
    does not end the process, exit with 128 + its number, the shell's code for it."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed or broken stream: nothing left to flush
            stream.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    raise SystemExit(128 + signum)


def ignored_at_start() -> tuple[int, ...]:
    """SIGINT when this process started with it ignored, as a POSIX shell starts a job that a
    script runs in the background (``memmesh serve &``): Ctrl-C in that terminal is meant for
    the command in the foreground. Python leaves such a SIGINT ignored (no KeyboardInterrupt),
    and so does ``serve``, where uvicorn would take it over (and then, its handler gone, exit 0).
    SIGTERM, the signal supervisors and ``kill`` stop a service with, is always honoured."""
    if threading.current_thread() is not threading.main_thread():
        return ()  # only the main thread handles signals (and uvicorn leaves them alone there)
    return (signal.SIGINT,) if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else ()


def keep_ignored(signums: tuple[int, ...]) -> None:
    """Ignore ``signums`` again, after uvicorn installed its handlers over them."""
    for signum in signums:
        signal.signal(signum, signal.SIG_IGN)


class Server(uvicorn.Server):
    """uvicorn's server, except that a stop signal ignored at start stays ignored
    (:func:`ignored_at_start`), and the signals that stopped it are kept in :attr:`stopped_by`."""

    def __init__(self, config: uvicorn.Config, ignored: tuple[int, ...] = ()) -> None:
        super().__init__(config)
        self.ignored = ignored
        self.stopped_by: list[int] = []

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopped_by.append(sig)
        super().handle_exit(sig, frame)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():  # on leaving: the old handlers back, and the signal raised again into them
            keep_ignored(self.ignored)
            yield


def run_uvicorn(app: Any, sock: socket.socket | None, **options: Any) -> None:
    """Serve ``app`` with uvicorn (on ``sock`` when it is already bound) until a signal stops
    it; that signal then comes out as KeyboardInterrupt or :class:`Terminated` (see
    :func:`signals_unwind`), where ``uvicorn.run`` would swallow Ctrl-C and exit 0. A SIGINT
    ignored at start stays ignored (:func:`ignored_at_start`)."""
    config = uvicorn.Config(app, **options)
    ignored = ignored_at_start()
    if ignored:
        logging.getLogger("memmesh.serve").info(
            "Ctrl-C (SIGINT) is ignored: this process started with it ignored (a job started in the background); SIGTERM stops it"
        )
    if config.workers > 1:
        from uvicorn.supervisors import Multiprocess

        supervisor = Multiprocess(config, sockets=[sock if sock is not None else config.bind_socket()])
        keep_ignored(ignored)  # the supervisor took SIGINT and SIGTERM over
        caught = _note_signals()  # the supervisor stops its workers on these and returns
        supervisor.run()
        if caught:
            raise STOP_SIGNALS[signal.Signals(caught[0])]
        return
    server = Server(config, ignored)
    server.run(sockets=None if sock is None else [sock])
    if server.stopped_by:  # raised again into a handler that did not raise: still the signal's stop
        raise STOP_SIGNALS[signal.Signals(server.stopped_by[0])]
    if not server.started:
        raise SystemExit(3)  # uvicorn.run's exit code when the app fails to start


def _note_signals() -> list[int]:
    """Record SIGINT/SIGTERM in the returned list, then hand them to the handler in place
    (uvicorn's worker supervisor, which returns from run() instead of raising them again);
    an ignored one stays ignored."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return caught
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler == signal.SIG_IGN:
            continue

        def note(sig: int, frame: Any, handler: Any = handler) -> None:
            caught.append(sig)
            if callable(handler):
                handler(sig, frame)

        signal.signal(signum, note)
    return caught


def start_line(settings: Settings, service: Service) -> str:
    """What ``memmesh serve`` says once at start: which store (password hidden), where, and
    who may call it, so a wrong --db or an open server is seen at once."""
    server, auth = settings.server, settings.auth
    if service.auth_enabled():
        mode = "API key required"
    elif service.keys_required():  # the same state the per-request check reads
        revoked = bool(service.store.api_keys(include_revoked=True))
        why = "every API key was revoked" if revoked else "restored or migrated from a store that held API keys"
        mode = f"closed — {why}; create one with `memmesh keys create --agent NAME --role admin`"
    elif auth.require_auth:
        mode = "API key required (--require-auth), but none exists yet: create one with `memmesh keys create`"
    elif not is_loopback(server.host):
        mode = "OPEN to the network, no API keys (--insecure)"
    else:
        mode = "open on loopback, no API keys yet (the first `memmesh keys create` turns keys on)"
    new = " (new database)" if getattr(service.store, "created", False) else ""
    scheme = "https" if settings.tls.cert_file is not None else "http"  # [tls] cert_file/--tls-cert: only https answers
    return f"memmesh serving {settings.display_url}{new} at {scheme}://{server.host}:{server.port}; auth: {mode}"


def settings_env(settings: Settings) -> dict[str, str]:
    """``MEMMESH_*`` variables that reproduce ``settings`` in a worker process."""
    env = {"MEMMESH_DATA_DIR": str(settings.data_dir)}
    for section in SECTIONS:
        for key, value in getattr(settings, section).model_dump(mode="json").items():
            if value is not None:
                env[f"MEMMESH_{section.upper()}_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options for the ``[tls]`` server settings: an SSL context and, with an mTLS
    allowlist, the protocol that keeps unlisted certificates off the sync routes.

    Checked here, before listening: a missing file, a key others can read, or an empty
    allowlist stops the start with a message that says what to fix.
    """
    from memmesh.tls import Allowlist, server_tls

    tls = settings.tls
    server_side = server_tls(
        tls.cert_file,
        tls.key_file,
        client_ca=tls.client_ca_file,
        require_client_cert=tls.require_client_cert,
        allowlist=tls.mtls_allowlist,
        fallback_ca=tls.quorum_client_ca_file,
    )
    if server_side is None:
        return {}
    options: dict[str, Any] = {"ssl_context_factory": server_side}
    if server_side.allowlist is not None:
        from memmesh.interfaces.http.tls_guard import PeerCertProtocol

        allowlist = Allowlist(server_side.allowlist)
        options["http"] = functools.partial(PeerCertProtocol, allowlist=allowlist, request_timeout=settings.server.request_timeout_secs)
    return options


def open_for_serving(settings: Settings) -> Service:
    """The store to serve. A missing one is created only after the bind check passed: a new
    store has no API keys, so a refused network bind must leave no database file behind."""
    try:
        return build(settings, create=False)
    except NotFoundError:
        check_bind(settings.server.host, False, settings.auth.insecure)
        return build(settings, create=True)


def json_logs_from_the_start() -> None:
    """``serve --log-json``: JSON log lines before the settings are read, so that an error in
    them (a bad config file or flag value) is a JSON line too."""
    logs.configure(True)


def serve(settings: Settings, environ: MutableMapping[str, str] | None = None) -> None:
    """Serve until SIGTERM/SIGINT with the [server] and [auth] settings; then, with the store
    closed, end the process by that signal (see the module doc)."""
    server = settings.server
    logs.configure(server.log_json)
    tls = tls_options(settings)  # a TLS mistake is the first thing said, before the port is taken
    sock = listen_on(server.host, server.port)
    if server.port == 0:  # every later use (start line, workers' settings) sees the real port
        server = server.model_copy(update={"port": sock.getsockname()[1]})
        settings = settings.model_copy(update={"server": server})
    stopped: int | None = None
    with signals_unwind():
        try:
            serve_on(settings, sock, environ, tls)
        except (KeyboardInterrupt, Terminated) as exc:
            stopped = stopped_by(exc)
        finally:
            sock.close()
    if stopped is not None and threading.current_thread() is threading.main_thread():
        die_of(stopped)


def serve_on(
    settings: Settings, sock: socket.socket | None, environ: MutableMapping[str, str] | None = None, tls: dict[str, Any] | None = None
) -> None:
    """:func:`serve` once the port is known: open the store, say where, run uvicorn (with
    ``tls``, the :func:`tls_options` already checked, or checked here)."""
    server = settings.server
    service = open_for_serving(settings)
    try:
        build_mesh(service, settings)
        check_bind(server.host, service.auth_enabled(), settings.auth.insecure)
        logging.getLogger("memmesh.serve").info(start_line(settings, service))
        common: dict[str, Any] = {
            "host": server.host,
            "port": server.port,
            "log_config": None,
            "access_log": False,
            "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
            "server_header": False,
            "http": protocol_for(server.request_timeout_secs),  # slow clients are cut off (timeouts.py)
        }
        common.update(tls_options(settings) if tls is None else tls)
        if server.workers > 1:
            (os.environ if environ is None else environ).update(settings_env(settings))
            run_uvicorn("memmesh.interfaces.http.server:app_factory", sock, factory=True, workers=server.workers, **common)
        else:
            run_uvicorn(create_app(service, settings, open_metrics=is_loopback(server.host), owns_service=True), sock, **common)
    finally:
        service.close()  # queued embeddings first, then the store


def app_factory() -> FastAPI:
    """One worker's app, from the settings :func:`serve` exported to the environment."""
    settings = load_settings()
    logs.configure(settings.server.log_json)
    service = build(settings)
    build_mesh(service, settings)
    return create_app(service, settings, open_metrics=is_loopback(settings.server.host), owns_service=True)
