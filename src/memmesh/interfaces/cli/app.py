"""The ``memmesh`` entry point: global options, command registration, error rendering."""

from __future__ import annotations

from memmesh.interfaces.cli import startup  # first: Ctrl-C while the rest loads exits 130 quietly

# isort: split

import contextlib
import importlib
import os
import re
import sys
from typing import Any

import typer

from memmesh.errors import MemmeshError, StorageError
from memmesh.fileaccess import no_room
from memmesh.interfaces.cli.context import app, err_console, print_json, state
from memmesh.interfaces.cli.lazy import ClickException, LazyCommands, NoArgsIsHelpError, UsageError
from memmesh.wording import count

_CLI = "memmesh.interfaces.cli"
COMMANDS: dict[str, str] = {
    **dict.fromkeys(["init", "stats", "gc", "reindex", "doctor"], f"{_CLI}.admin"),
    "migrate": f"{_CLI}.migrate_cmd",
    **dict.fromkeys(["backup", "restore"], f"{_CLI}.backup_cmd"),
    **dict.fromkeys(["chaos", "ship-gate"], f"{_CLI}.chaos"),
    "sync-daemon": f"{_CLI}.cluster",
    "mcp": f"{_CLI}.mcp_cmd",
    **dict.fromkeys(
        ["store", "get", "list", "recall", "search", "update", "delete", "undelete", "link", "links", "history"], f"{_CLI}.memories"
    ),
    "remember": f"{_CLI}.remember_cmd",
    "serve": f"{_CLI}.server",
    **dict.fromkeys(["notify", "inbox"], f"{_CLI}.subscribe_cmd"),
    **dict.fromkeys(["export", "import"], f"{_CLI}.transfer"),
    "curator": f"{_CLI}.curator",
    **dict.fromkeys(["namespace", "pending"], f"{_CLI}.governance"),
    "agents": f"{_CLI}.agents",
    "audit": f"{_CLI}.audit",
    "bus": f"{_CLI}.bus_cmd",
    "certs": f"{_CLI}.certs",
    "cluster": f"{_CLI}.cluster",
    "keys": f"{_CLI}.keys",
    "session": f"{_CLI}.session_cmd",
    "subscribe": f"{_CLI}.subscribe_cmd",
    "workers": f"{_CLI}.workers_cmd",
    "models": f"{_CLI}.models",
}
"""Each command's name and the module that registers it, in the order ``memmesh --help``
lists them: a command's module is imported when the command runs (lazy.py)."""
LazyCommands.configure(app, COMMANDS)


def load_every_command() -> None:
    """Import every command's module, for code that walks the whole command tree (the
    generated docs/cli.md, tests of every command's help); running a command loads its own."""
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(module)


def _print_version(value: bool) -> None:
    """Eager, so ``memmesh --version`` alone prints and exits 0 before a command is required."""
    if value:
        from memmesh import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def options(
    db: str = typer.Option(None, "--db", envvar="MEMMESH_DB", help="Database URL or SQLite file path.", show_envvar=True),
    config: str = typer.Option(None, "--config", help="Config file (default: $MEMMESH_CONFIG or the platform config dir)."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
) -> None:
    """Long-term memory for AI agents: store, recall and share what agents learn."""
    state.reset(db, config)


def cli_option(name: str, value: str | bool) -> str:
    """How a fix reads on the command line: ``--on-conflict update``, or a flag: ``--all``."""
    flag = f"--{name.replace('_', '-')}"
    return flag if value is True else f"{flag} {value}"


CLI_COMMANDS = {
    "session_append": "memmesh session append",
    "session_list": "memmesh session list",
    "pending_all": "memmesh pending list --status all",
    "standards_list": "memmesh namespace list",
    "keys_list": "memmesh keys list",
    "peer_key_create": "memmesh keys create --agent NODE_ID --role peer",
    "curator_runs": "memmesh curator runs",
    "subscriptions_list": "memmesh subscribe list",
}
"""The command of each operation an error may point to (:data:`memmesh.errors.OPERATIONS`)."""


def cli_command(operation: str) -> str:
    """The command for an operation a fix names: ``session_append`` → ``memmesh session append``."""
    return CLI_COMMANDS[operation]


USAGE = 2
"""The exit code of a usage error, Click's and the core's alike."""


def click_error_line(exc: ClickException) -> str:
    """Click's own error (a missing or extra argument, an unknown option or command, a value of
    the wrong type) as the one line every other error is: ``error: …`` and where to look.
    Click drew a boxed panel under a usage line instead, unlike the rest of the CLI."""
    text = exc.format_message().strip().rstrip(".")
    text = text[:1].lower() + text[1:]
    text = re.sub(r"\. Did you mean (.+\?)$", r" (did you mean \1)", text)  # Click's typo hint, inside the one line
    ctx = getattr(exc, "ctx", None)
    if ctx is None or not isinstance(exc, UsageError):
        return f"error: {text}"
    if "unexpected extra argument" in text:
        text += f": {_arguments_taken(ctx.command_path, ctx.command.params)}"
    return f"error: {text}; see {ctx.command_path} --help"


def _arguments_taken(command: str, params: list[Any]) -> str:
    """``memmesh recall takes 1 argument (QUERY); quote a value that has spaces``."""
    names = [str(p.metavar or p.name).upper() for p in params if p.param_type_name == "argument"]
    if not names:
        return f"{command} takes no arguments"
    return f"{command} takes {count(len(names), 'argument')} ({' '.join(names)}); quote a value that has spaces"


def _output_failed(exc: OSError) -> Exception:
    """What an OSError that escaped a command means. The core turns its own file and store
    errors into memmesh errors, so a raw one that found no room is the command's output
    failing (``memmesh export > file`` on a full disk): a StorageError, with standard output
    pointed at /dev/null so that the interpreter's last flush of what is still buffered does
    not fail again with a traceback. (Click itself ends a command whose reader closed the
    pipe, ``memmesh export | head``, quietly with exit 1.) Any other OSError is a bug, and
    raised as it is."""
    room = no_room(exc)
    if room is None:
        return exc
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return StorageError(
        f"cannot write the output: {room} ({exc.strerror}); what was written is incomplete: free some space or write elsewhere"
    )


def _say_error(label: str, message: str, code: str, status: int) -> None:
    """``error: …`` on stderr; under ``serve --log-json`` (its logs already JSON lines) the
    same words as one JSON log record, with the error's code and the exit status."""
    logs = sys.modules.get("memmesh.interfaces.http.logs")  # imported only by the commands that log
    if logs is not None and logs.writes_json():
        import logging

        logging.getLogger("memmesh.cli").error(message, extra={"code": code, "exit_status": status})
        return
    err_console.print(f"{label}: {message}", markup=False, highlight=False)


def main() -> None:
    """Run the CLI; a memmesh error becomes one line on stderr and its exit code, and Ctrl-C
    exit code 130 without a traceback (see startup.py for Ctrl-C while the CLI loads). Click
    runs outside its standalone mode so that its usage errors reach here too: they become the
    same one line (:func:`click_error_line`), exit 2."""
    try:
        try:
            status = app(standalone_mode=False, prog_name="memmesh")
        except OSError as exc:
            raise _output_failed(exc) from exc
    except MemmeshError as exc:
        state.finish()
        label = "pending" if exc.code == "pending_approval" else "error"  # queued for approval: exit 3, not a failure
        flag = state.flag_for(exc.field)  # a flag given a value the core refuses: a usage error naming it, as Click's own
        message = exc.message_for(cli_option, cli_command, flag)
        status = USAGE if flag else exc.exit_status
        if status == USAGE:  # ends as Click's own usage errors do (click_error_line)
            message += f"; see {state.command.command_path if state.command else 'memmesh'} --help"
        _say_error(label, message, exc.code, status)
        if label == "pending" and state.command is not None and state.command.params.get("as_json"):
            print_json(exc.to_dict(cli_option, cli_command))  # a script takes the pending_id from stdout, as HTTP's 202 body
        sys.exit(status)
    except NoArgsIsHelpError as exc:  # the help is printed already (as `--help` prints it)
        state.finish()
        sys.exit(exc.exit_code)
    except ClickException as exc:
        state.finish()
        err_console.print(click_error_line(exc), markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except typer.Abort:  # end of input at a prompt
        state.finish()
        err_console.print("aborted", markup=False, highlight=False)
        sys.exit(1)
    except SystemExit:
        state.finish()
        raise
    except KeyboardInterrupt:  # Ctrl-C before typer runs the command (it answers one there with 130 itself)
        state.finish()
        sys.exit(startup.INTERRUPTED)
    state.finish()
    sys.exit(status if isinstance(status, int) else 0)  # typer.Exit(code) comes back as its code


if __name__ == "__main__":
    main()
