"""What a new user reading `memmesh … --help` found broken in session 6: each test fails on
the code before its fix."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import typer

from memmesh.interfaces.cli.app import app

BRACKETED = re.compile(r"\[\[?[a-z_]+\]\]?")
"""A config section as help texts name it: ``[curator]``, ``[[worker]]``."""


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _written(command: Any) -> list[str]:
    """Every help text the code gives the command and its options, as Rich shows it (``\\[`` is a literal bracket)."""
    texts = [command.help or ""] + [getattr(param, "help", None) or "" for param in command.params]
    return [text.replace("\\[", "[") for text in texts]


def test_every_config_section_named_in_help_is_shown(cli_in_process: Callable[..., object]) -> None:
    # Before: help texts such as "(default: [curator] max_ops)" went through Rich markup, which
    # took "[curator]" for a style and dropped it: `memmesh curator run --help` said
    # "(default:  max_ops)", `memmesh remember --help` "by the  server".
    checked = 0
    for path, command in _commands(typer.main.get_command(app)):
        wanted = sorted({m for text in _written(command) for m in BRACKETED.findall(text)})
        if not wanted:
            continue
        shown = cli_in_process(*path, "--help")
        assert shown.code == 0, shown  # type: ignore[attr-defined]
        text = " ".join(shown.out.split())  # type: ignore[attr-defined]
        missing = [w for w in wanted if w not in text]
        assert not missing, f"`memmesh {' '.join(path)} --help` lost {missing}: {text}"
        checked += 1
    assert checked >= 6, "the help texts that name config sections were all found"
