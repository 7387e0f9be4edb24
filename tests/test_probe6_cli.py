"""What a new user reading `memmesh … --help` found broken in session 6: each test fails on
the code before its fix."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import typer

from memmesh.interfaces.cli.app import app, load_every_command

load_every_command()  # `.commands` below holds only the commands loaded so far

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


def test_stored_text_cannot_drive_the_operators_terminal(cli_in_process: Callable[..., Any]) -> None:
    # Before: an agent that stored "\x1b[2J…" over HTTP or MCP cleared (recoloured, retitled)
    # the terminal of whoever ran `memmesh list`/`get`/`search`/`history` on that store.
    content, title = "evil \x1b[2J\x1b]0;owned\x07 text \u202eright to left", "ti\x1b[5mtle"
    stored = cli_in_process("store", content, "-n", "ops", "--title", title, "--json")
    assert stored.code == 0, stored
    memory_id = json.loads(stored.out)["id"]
    for args in [("list", "-n", "ops"), ("get", memory_id), ("search", "evil"), ("history", memory_id), ("get", memory_id + "\x1b[2J")]:
        shown = cli_in_process(*args)
        text = shown.out + shown.err
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, (args, text)
        assert "\\x1b" in text, (args, text)
    whole = cli_in_process("get", memory_id, "--json")
    assert json.loads(whole.out)["content"] == content, "--json gives the stored text exactly"


def test_a_tag_with_a_control_character_is_refused_by_the_cli(cli_in_process: Callable[..., Any]) -> None:
    assert cli_in_process("store", "a plain fact", "-n", "ops").code == 0
    refused = cli_in_process("store", "a tagged fact", "-n", "ops", "-t", "ok,a\x1bb")
    assert refused.code == 2 and "U+001B" in refused.err and "one-line labels" in refused.err, refused
    items = json.loads(cli_in_process("list", "--json").out)["items"]
    assert [m["content"] for m in items] == ["a plain fact"], "nothing refused was stored"
