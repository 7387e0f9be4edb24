"""What every CLI command shares: the Typer app, the lazily built service, output helpers.

Errors are rendered in one place (:func:`memmesh.interfaces.cli.app.main`): a one-line
``error: …`` on stderr and the error type's exit code; usage errors exit 2 (Click).
"""

from __future__ import annotations

import json
import os
import re
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from memmesh.config import Settings, db_override, load_settings
from memmesh.interfaces.cli.lazy import LazyCommands
from memmesh.model import ModelT, parse_model
from memmesh.service import Service
from memmesh.store.base import Store

app = typer.Typer(
    name="memmesh",
    cls=LazyCommands,
    help="Long-term memory for AI agents: store, recall and share what agents learn.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff]")
"""Characters a terminal acts on or hides: C0/C1 controls but line feed and tab, bidi
marks and overrides, zero-width spaces, line/paragraph separators."""


def printable(text: str) -> str:
    """``text`` with every character of :data:`_UNSAFE` written as its escape (``\\x1b``)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class SafeConsole(Console):
    """A console that never passes stored text's control characters to the terminal.

    Memories are written by agents over HTTP and MCP; ``memmesh list``/``get`` print them
    to an operator's terminal, where an ESC sequence would clear the screen, recolour or
    retitle it, or hide text. Every string Rich renders (table cells included) goes through
    ``render_str``; Rich's own styling is added later and is unaffected. ``--json`` output
    is JSON-escaped and not touched."""

    def render_str(self, text: str, **options: Any) -> Any:
        return super().render_str(printable(text), **options)


class TextTable(Table):
    """A table of stored data: every text cell is shown as the text it is. A plain ``Table``
    reads a cell as Rich markup, so a memory, tag, agent name or task result holding
    ``[b]`` or ``memmesh[postgres]`` lost the brackets and what was between them."""

    def add_row(self, *renderables: Any, **options: Any) -> None:
        super().add_row(*(Text(printable(r)) if isinstance(r, str) else r for r in renderables), **options)


def id_column(table: Table, ids: Iterable[str], header: str = "id") -> None:
    """Add a column of ids to ``table``, never cut or wrapped however narrow the terminal: a
    table is where people copy ids from (into ``get``, ``bus claim``, ``pending approve``, …)."""
    table.add_column(header, no_wrap=True, min_width=max((len(printable(i)) for i in ids), default=len(header)))


PIPE_WIDTH = 1000
"""Columns of a table printed into a pipe or a file (no terminal, no COLUMNS): Rich assumes 80
there, and `pending list --status all | cat` cut every column to a few letters ("wr…"). Like
`ps` in a pipe, the lines are as long as their text (a table takes its natural width)."""


def _width(stream: Any) -> int | None:
    """None (Rich decides: the terminal's width, or COLUMNS) unless ``stream`` is no terminal."""
    if os.environ.get("COLUMNS") or getattr(stream, "isatty", lambda: False)():
        return None
    return PIPE_WIDTH


console = SafeConsole(soft_wrap=True, width=_width(sys.stdout))
err_console = SafeConsole(stderr=True, soft_wrap=True, width=_width(sys.stderr))


@dataclass
class State:
    """Global options, and the service built from them on first use."""

    db: str | None = None
    config: str | None = None
    _settings: Settings | None = None
    _service: Service | None = None
    extra_overrides: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    """The flag that set each dotted key of :attr:`extra_overrides` (``{"server.port": "--port"}``)."""
    command: typer.Context | None = None
    """The running command's context, kept when it first asks for the settings, so that an
    error the core raises about a parameter can be reported against the flag that set it."""

    def reset(self, db: str | None, config: str | None) -> None:
        """Start a fresh invocation (matters when the app is run several times in one process)."""
        self.db, self.config = db, config
        self._settings = self._service = None
        self.extra_overrides = {}
        self.flags = {}
        self.command = None

    def flag_for(self, name: str | None) -> str | None:
        """The flag given to the running command that set ``name``, a core parameter
        (``top_k``: ``--top-k``) or settings key (``federation.peer_key_file``), or None when no
        flag did (a config file or a default set it: the message keeps the key's name). The
        option is the one of that parameter name, else the one whose flag spells it
        (``state``: ``--state``, as :func:`memmesh.interfaces.cli.app.cli_option` spells a
        fix), or the flag itself where :func:`parse_options` spelt the field so."""
        if name is None:
            return None
        section, _, key = name.rpartition(".")
        if name in self.flags and self.extra_overrides.get(section, {}).get(key) is not None:
            return self.flags[name]
        ctx = self.command
        if ctx is None:
            return None
        flags = option_flags(ctx)
        if key not in flags:
            spelt = (name, f"--{key.replace('_', '-')}")
            key = next((parameter for parameter, flag in flags.items() if flag in spelt), key)
        if key not in flags:
            return None
        source = ctx.get_parameter_source(key)
        return flags[key] if source is not None and source.name != "DEFAULT" else None

    def name_flags(self) -> None:
        """From here on, an error of the core about a value names the flag of the running
        command that gave it (settings() does this too; call it for a check made before)."""
        self.command = _running_command()

    def settings(self) -> Settings:
        if self._settings is None:
            self.name_flags()
            overrides: dict[str, Any] = db_override(self.db)
            for section, values in self.extra_overrides.items():  # merged per section: serve --node-id keeps the global --db
                merged = {**overrides.get(section, {}), **values} if isinstance(values, dict) else values
                overrides[section] = {k: v for k, v in merged.items() if v is not None} if isinstance(merged, dict) else merged
            flags = {"storage.url": "--db", **self.flags}
            self._settings = load_settings(self.config, overrides=overrides, flag_names=flags)
        return self._settings

    def set_from_options(self, ctx: typer.Context, settings: dict[str, str]) -> None:
        """Set the settings this command's options stand for (``{"port": "server.port"}``:
        parameter name to dotted key) to the values given, remembering each option's flag, so
        a value the settings refuse is reported against ``--port``. Unset options set nothing."""
        flags = option_flags(ctx)
        for name, dotted in settings.items():
            section, key = dotted.split(".")
            self.extra_overrides.setdefault(section, {})[key] = ctx.params[name]
            self.flags[dotted] = flags[name]

    def service(self, *, create: bool = False) -> Service:
        """The service over the configured store. Commands that write pass ``create=True``;
        every other command fails on a missing store instead of leaving an empty one."""
        if self._service is None:
            from memmesh.compose import build

            self._service = build(self.settings(), create=create)
        return self._service

    def finish(self) -> None:
        """At the end of a command, whatever its outcome: say once that it created a store."""
        service, self._service = self._service, None
        if service is not None:
            announce_created(service.store)

    def writing_service(self, rehearse: Callable[[Service], object] | None = None) -> Service:
        """The service for a command that writes, creating the store if it is missing.

        A new store is made only once the write is known to go ahead: ``rehearse`` first
        runs the command's checks against an empty in-memory stand-in, so a refused write
        (bad input, unreadable source) leaves nothing on disk. Nothing is ever deleted
        afterwards instead: another process may already be using a store we just made.
        """
        from memmesh.errors import NotFoundError

        try:
            return self.service(create=False)
        except NotFoundError:
            if rehearse is not None:
                rehearse(self.dry_run_service())
                self._service.store.close()  # type: ignore[union-attr]
                self._service = None
            return self.service(create=True)

    def dry_run_service(self) -> Service:
        """For a dry run: the configured store if it exists, else an empty in-memory,
        keyword-only stand-in, so the run reports everything as new and creates nothing."""
        from memmesh.errors import NotFoundError

        try:
            return self.service(create=False)
        except NotFoundError:
            from memmesh.compose import build

            settings = self.settings()
            stand_in = settings.model_copy(
                update={
                    "storage": settings.storage.model_copy(update={"url": "sqlite:///:memory:"}),
                    "embeddings": settings.embeddings.model_copy(update={"provider": "none"}),
                }
            )
            self._service = build(stand_in)
            return self._service


state = State()
_announced: weakref.WeakSet[Store] = weakref.WeakSet()
"""Stores this process has said it created (kept here, not as a private attribute on the store)."""


def announce_created(store: Store) -> None:
    """Say once, on stderr, that this command made a new store (a typo in --db shows at once)."""
    if getattr(store, "created", False) and store not in _announced:
        _announced.add(store)
        from memmesh.redact import redact_url

        where = getattr(store, "path", None) or redact_url(store.url)
        err_console.print(f"created a new memmesh database at {where}", markup=False, highlight=False)


def warn_if_shell_expanded(patterns: Sequence[str] | None) -> None:
    """Warn (stderr) about a namespace pattern that names a file in the working directory: the
    shell expands an unquoted ``*`` before memmesh sees it, so ``--namespace *`` arrives as
    ``--namespace notes.txt`` and scopes a key to a namespace nobody meant (narrower, so
    nothing leaks, but the key then fails everywhere it was meant to work)."""
    for pattern in patterns or ():
        if pattern and "*" not in pattern and Path(pattern).exists():
            err_console.print(
                f"warning: namespace {pattern!r} is also the name of a file in this directory: if you typed "
                "--namespace * to mean every namespace, the shell replaced the * with file names; quote it: --namespace '*'",
                markup=False,
                highlight=False,
            )


def counting_progress(disable: bool = False) -> Progress:
    """A progress bar on stderr that shows ``done/total`` (``done/?`` when the total is not
    known) and the time left, so a long import or migration says how far it is. Only on a
    terminal: redirected, Rich drew no bar but left a stray empty line on stderr."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=disable or not err_console.is_terminal,
    )


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(to_jsonable(value), ensure_ascii=False, indent=2) + "\n")


def parse_json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """A JSON object given on the command line (e.g. --metadata), with a clear error."""
    from memmesh.errors import InvalidInputError

    if text is None:
        return None
    state.name_flags()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f'{option} is not valid JSON ({exc.msg} at char {exc.pos}); e.g. {option} \'{{"k": "v"}}\'', field=option
        ) from None
    if not isinstance(value, dict):
        raise InvalidInputError(f'{option} must be a JSON object, e.g. {option} \'{{"k": "v"}}\'', field=option)
    return value


def _running_command() -> typer.Context | None:
    """The context of the command being run (None outside one)."""
    current: Any
    try:  # Typer 0.2x runs its own copy of Click, whose context stack is not click's
        from typer._click.globals import get_current_context as current
    except ImportError:  # an older Typer, on Click itself
        from click import get_current_context as current
    ctx: typer.Context | None = current(silent=True)
    return ctx


def option_flags(ctx: typer.Context) -> dict[str, str]:
    """The long flag of each option of ``ctx``'s command, by parameter name (``{"top_k": "--top-k"}``).
    Arguments are left out: what they carry is data (a memory's text, piped or typed), and data
    the core refuses is exit 1, not a usage error."""
    return {p.name: max(p.opts, key=len) for p in ctx.command.params if p.name and p.param_type_name == "option"}


def parse_options(model: type[ModelT], data: Mapping[str, Any], ctx: typer.Context, renamed: Mapping[str, str] | None = None) -> ModelT:
    """Validate what a command's options say into the core's ``model`` (the service takes the
    result as it is), naming the flag of a bad value: ``--on-conflict: …``, not ``on_conflict: …``.
    ``renamed`` names the parameter that sets a field where the two names differ (``{"ttl_seconds": "ttl"}``)."""
    state.command = ctx  # the core's error names a flag of this command (State.flag_for)
    flags = option_flags(ctx)
    parameter = {name: (renamed or {}).get(name, name) for name in data}
    return parse_model(model, data, names={name: flags[p] for name, p in parameter.items() if p in flags})


def split_tags(text: str | None) -> list[str] | None:
    return None if text is None else [t for t in text.split(",") if t.strip()]


JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")

QUORUM_CLIENT_CERT_OPTION = typer.Option(None, "--quorum-client-cert", help="Client certificate this node presents to its peers.")
QUORUM_CLIENT_KEY_OPTION = typer.Option(None, "--quorum-client-key", help="Its private key (mode 0600 or 0400).")
QUORUM_CLIENT_CA_OPTION = typer.Option(None, "--quorum-client-ca", help="CA the peers' server certificates must chain to.")
QUORUM_CLIENT_SETTINGS = {
    "quorum_client_cert": "tls.quorum_client_cert_file",
    "quorum_client_key": "tls.quorum_client_key_file",
    "quorum_client_ca": "tls.quorum_client_ca_file",
}
"""The client side of mesh TLS, for every command that calls peers (``serve`` and the
``cluster`` commands): parameter name → the ``[tls]`` setting it sets."""
