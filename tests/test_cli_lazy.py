"""``memmesh`` loads the module of the command it runs, not every command's (cli/lazy.py):
the table of commands must name each command and its module exactly, a command must still
run and show its help, and a mistyped command still gets suggestions from every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main
from tests.conftest import CliResult

from memmesh.interfaces.cli.app import COMMANDS, app, load_every_command

LIST_LOADED = """
import json, sys
from memmesh.interfaces.cli.app import main
sys.argv = ["memmesh", *sys.argv[1:]]
try:
    main()
finally:
    print(json.dumps(sorted(m for m in sys.modules if m.startswith("memmesh."))), file=sys.stderr)
"""


def _callbacks(command: Any) -> Iterator[Any]:
    """The functions a command runs: its own, or those of every command under a group."""
    if getattr(command, "commands", None):
        for sub in command.commands.values():
            yield from _callbacks(sub)
    elif command.callback is not None:
        yield command.callback


def test_the_table_names_every_command_with_the_module_that_registers_it() -> None:
    load_every_command()
    root = typer.main.get_command(app)
    assert sorted(root.commands) == sorted(COMMANDS)  # type: ignore[attr-defined]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        assert {f.__module__ for f in _callbacks(command)} == {COMMANDS[name]}, name


def _run_listing_modules(tmp_path: Path, *args: str) -> tuple[CliResult, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "memmesh.toml").write_text("")
    env.update(MEMMESH_DB=str(tmp_path / "m.db"), MEMMESH_CONFIG=str(tmp_path / "memmesh.toml"), MEMMESH_EMBEDDINGS_PROVIDER="none")
    proc = subprocess.run([sys.executable, "-c", LIST_LOADED, *args], capture_output=True, text=True, env=env, timeout=120)
    *lines, loaded = proc.stderr.strip().splitlines()
    return CliResult(proc.returncode, proc.stdout, "\n".join(lines)), json.loads(loaded)


def test_a_command_loads_its_own_module_and_not_the_others(tmp_path: Path) -> None:
    stored, loaded = _run_listing_modules(tmp_path, "store", "the cat likes tuna", "-n", "demo", "--json")
    assert stored.code == 0, stored.err
    assert "memmesh.interfaces.cli.memories" in loaded
    for other in [
        "memmesh.interfaces.cli.migrate_cmd",
        "memmesh.interfaces.cli.chaos",
        "memmesh.interfaces.cli.bus_cmd",
        "memmesh.io.migrate",
    ]:
        assert other not in loaded, other
    memory_id = json.loads(stored.out)["id"]
    shown, _ = _run_listing_modules(tmp_path, "get", memory_id)
    assert shown.code == 0 and "the cat likes tuna" in shown.out, shown


def test_version_loads_no_command(tmp_path: Path) -> None:
    shown, loaded = _run_listing_modules(tmp_path, "--version")
    assert shown.code == 0 and shown.out.strip(), shown
    assert not set(COMMANDS.values()) & set(loaded), loaded


def test_every_command_is_listed_and_a_typo_gets_suggestions(cli: Any) -> None:
    listed = cli("--help")
    assert listed.code == 0
    for name in ["store", "recall", "bus", "models", "sync-daemon", "curator"]:
        assert f" {name} " in listed.out, name
    typo = cli("stor", "x")
    assert typo.code == 2
    assert typo.err.strip() == "error: no such command 'stor' (did you mean 'store', 'restore', 'history'?); see memmesh --help"
    group_typo = cli("bus", "sen")
    assert group_typo.code == 2 and "(did you mean 'send'?); see" in group_typo.err, group_typo
    help_of_one = cli("bus", "send", "--help")
    assert help_of_one.code == 0 and "Usage: memmesh bus send" in help_of_one.out, help_of_one
