"""Load a command's module when that command runs, not every module for every command.

Importing all of the CLI (the core, numpy, pydantic models, rich, httpx, the importers, the
curator, the bus) took about a second before any command did its work, and most commands
need a fraction of it: ``memmesh get`` has no use for the migrate or chaos code. The root
group therefore knows each command's name and the module that registers it
(:data:`memmesh.interfaces.cli.app.COMMANDS`), and imports that module only when Click asks
for the command by name: to run it, to show its help, or to list every command in
``memmesh --help`` (which still imports them all). A module registers its commands on the
shared Typer app as before (``@app.command()``, ``app.add_typer``); after the import the
root group takes the Click commands Typer builds from those registrations.

``tests/test_cli_lazy.py`` checks that the table names exactly the commands the modules
register, so a new command without a row (or a row without a command) fails there.
"""

from __future__ import annotations

import importlib
from difflib import get_close_matches
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperGroup

from memmesh.interfaces.cli import startup

try:  # Typer 0.2x runs its own copy of Click (see context._running_command)
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # an older Typer, on Click itself
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # type: ignore[assignment]

__all__ = ["ClickException", "LazyCommands", "NoArgsIsHelpError", "UsageError"]


class LazyCommands(TyperGroup):
    """The ``memmesh`` group: each command comes from its module on first use."""

    modules: ClassVar[dict[str, str]] = {}
    """Command name → the module that registers it, in the order ``--help`` lists them."""
    registry: ClassVar[typer.Typer | None] = None
    """The Typer app the modules register their commands on."""

    @classmethod
    def configure(cls, registry: typer.Typer, modules: dict[str, str]) -> None:
        """Set by app.py, which owns the table of commands."""
        cls.registry, cls.modules = registry, modules

    def list_commands(self, ctx: Any) -> list[str]:
        """Every command, loaded or not: the table's order, then any registered elsewhere."""
        return [*self.modules, *(name for name in self.commands if name not in self.modules)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self.modules:
            self._load(self.modules[cmd_name])
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """Click's, with "Did you mean" drawn from every command: Typer draws it from the
        loaded ones, which for a mistyped name are none."""
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if matches and "Did you mean" not in exc.message:
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise

    def _load(self, module: str) -> None:
        """Import ``module`` (it registers its commands on the Typer app) and take the Click
        commands Typer builds for everything registered so far. The first command loaded
        ends the window in which Ctrl-C exits quietly (startup.py): the rest is the command."""
        if self.registry is None:
            raise RuntimeError("LazyCommands.configure() was not called")
        importlib.import_module(module)
        built = typer.main.get_group(self.registry)
        for name, command in built.commands.items():
            self.commands.setdefault(name, command)
        startup.loaded()
