"""What every CLI command shares: the Typer app, the lazily built service, output helpers.

Errors are rendered in one place (:func:`memmesh.interfaces.cli.app.main`): a one-line
``error: …`` on stderr and the error type's exit code; usage errors exit 2 (Click).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console

from memmesh.config import Settings, db_override, load_settings
from memmesh.service import Service

app = typer.Typer(
    name="memmesh",
    help="Long-term memory for AI agents: store, recall and share what agents learn.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@dataclass
class State:
    """Global options, and the service built from them on first use."""

    db: str | None = None
    config: str | None = None
    _settings: Settings | None = None
    _service: Service | None = None
    extra_overrides: dict[str, Any] = field(default_factory=dict)

    def reset(self, db: str | None, config: str | None) -> None:
        """Start a fresh invocation (matters when the app is run several times in one process)."""
        self.db, self.config = db, config
        self._settings = self._service = None
        self.extra_overrides = {}

    def settings(self) -> Settings:
        if self._settings is None:
            overrides: dict[str, Any] = db_override(self.db)
            for section, values in self.extra_overrides.items():  # merged per section: serve --node-id keeps the global --db
                merged = {**overrides.get(section, {}), **values} if isinstance(values, dict) else values
                overrides[section] = {k: v for k, v in merged.items() if v is not None} if isinstance(merged, dict) else merged
            self._settings = load_settings(self.config, overrides=overrides)
        return self._settings

    def service(self) -> Service:
        if self._service is None:
            from memmesh.compose import build

            self._service = build(self.settings())
        return self._service


state = State()


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
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f'{option} is not valid JSON ({exc.msg} at char {exc.pos}); e.g. {option} \'{{"k": "v"}}\'') from None
    if not isinstance(value, dict):
        raise InvalidInputError(f'{option} must be a JSON object, e.g. {option} \'{{"k": "v"}}\'')
    return value


def split_tags(text: str | None) -> list[str] | None:
    return None if text is None else [t for t in text.split(",") if t.strip()]


JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
