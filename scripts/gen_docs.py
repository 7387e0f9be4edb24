"""Fill the generated reference sections of docs/ from the code, so they cannot drift.

A page marks a region ``<!-- generated:NAME -->`` … ``<!-- /generated -->``; this script
replaces what is between the two with what the code says today:

- ``cli-help`` (docs/cli.md): every command's usage, help and options, from the Typer app;
- ``settings`` (docs/configuration.md): every setting with its type, default, environment
  variable and description, from ``memmesh.config.Settings``;
- ``http-routes`` (docs/http.md): every route with its summary, parameters and answer, from
  the FastAPI app's routes (its OpenAPI document);
- ``client-methods`` (docs/http.md): which of ``Memory``'s methods the HTTP ``Client`` has;
- ``mcp-tools`` (docs/mcp.md): the profiles and every tool family's tools with their hints
  and descriptions, from the MCP tool catalogue.

``python scripts/gen_docs.py`` rewrites the regions; ``--check`` changes nothing and exits 1
naming the stale regions (tests/test_docs_examples.py runs that check).
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
COMMAND = "python scripts/gen_docs.py"
_REGION = re.compile(r"(<!-- generated:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)


def _cell(text: object) -> str:
    """Text safe inside a markdown table cell: one line, ``|`` escaped, RST double backticks
    made markdown ones, and ``<`` outside code spans escaped (``<data_dir>`` is not a tag)."""
    parts = " ".join(str(text).split()).replace("``", "`").replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


def _first_paragraph(doc: str | None) -> str:
    return " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())


# -- CLI ---------------------------------------------------------------------------------


HELP_WIDTH = "100"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def cli_help() -> str:
    """``memmesh … --help`` of every command, in registration order, at a fixed width."""
    import typer
    from typer.testing import CliRunner

    from memmesh.interfaces.cli.app import app, load_every_command

    load_every_command()  # the tree below is read from .commands, which holds loaded commands only

    env = {"COLUMNS": HELP_WIDTH, "NO_COLOR": "1", "TERM": "dumb"}
    out: list[str] = []

    def walk(command: Any, path: list[str]) -> None:
        result = CliRunner().invoke(app, [*path, "--help"], env=env)
        if result.exit_code != 0:
            raise SystemExit(f"`memmesh {' '.join(path)} --help` failed: {result.output}")
        plain = _ANSI.sub("", result.output)  # FORCE_COLOR / GITHUB_ACTIONS make rich colour even here
        text = "\n".join(line.rstrip() for line in plain.strip("\n").splitlines())
        out.append(f"### `{' '.join(['memmesh', *path])}`\n\n```text\n{inspect.cleandoc(text)}\n```\n")
        names = command.list_commands(None) if hasattr(command, "list_commands") else []  # the order --help lists them
        for name in names:
            sub = command.commands[name]
            if not getattr(sub, "hidden", False):
                walk(sub, [*path, name])

    from typer import rich_utils

    # Read once by typer from the environment (FORCE_COLOR, GITHUB_ACTIONS, TERMINAL_WIDTH):
    # pinned here so the text is the same on every machine.
    forced, width = rich_utils.FORCE_TERMINAL, rich_utils.MAX_WIDTH
    rich_utils.FORCE_TERMINAL, rich_utils.MAX_WIDTH = False, int(HELP_WIDTH)
    try:
        walk(typer.main.get_command(app), [])
    finally:
        rich_utils.FORCE_TERMINAL, rich_utils.MAX_WIDTH = forced, width
    return "\n".join(out)


# -- settings ----------------------------------------------------------------------------


def settings_table() -> str:
    """One row per setting: key, type, default, environment variable, description."""
    from pydantic import BaseModel

    from memmesh.config import Settings

    rows = ["| key | type | default | environment | meaning |", "|---|---|---|---|---|"]
    rows.append(
        "| `data_dir` | path | platform data dir (Linux `~/.local/share/memmesh`) | `MEMMESH_DATA_DIR` "
        "| holds the default database `memmesh.db`, `cache/` (built ONNX graphs) and the web inspector's sessions `web_sessions.db` |"
    )
    for section, info in Settings.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for key, field in model.model_fields.items():
            env = f"`MEMMESH_{section.upper()}_{key.upper()}`"
            if (section, key) == ("storage", "url"):
                env += " or `MEMMESH_DB`"
            default = field.get_default(call_default_factory=True)
            shown = "—" if default is None else f"`{str(default).lower() if isinstance(default, bool) else default}`"
            rows.append(
                f"| `{section}.{key}` | {_cell(_type_name(field.annotation))} | {shown} | {env} | {_cell(field.description or '')} |"
            )
    return "\n".join(rows) + "\n"


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if annotation is Path:
        return "path"
    return {int: "integer", float: "number", bool: "boolean", str: "text"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


# -- HTTP --------------------------------------------------------------------------------


def routes_table() -> str:
    """Every route of the HTTP app: what it does, what it takes, what it answers."""
    from memmesh import Memory
    from memmesh.config import load_settings
    from memmesh.interfaces.http.app import create_app

    settings = load_settings(None, overrides={"storage": {"url": "sqlite:///:memory:"}, "embeddings": {"provider": "none"}}, env={})
    mem = Memory("sqlite:///:memory:", settings)
    try:
        app = create_app(mem.service, settings)
        spec = app.openapi()
        hidden = sorted(
            (getattr(r, "path", ""), sorted(getattr(r, "methods", None) or ["*"]))
            for r in app.routes
            if getattr(r, "include_in_schema", True) is False
            and getattr(r, "path", "") not in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
        )
    finally:
        mem.close()
    schemas = spec.get("components", {}).get("schemas", {})
    rows = ["| route | what it does | query / body | answer |", "|---|---|---|---|"]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            what = op.get("summary", "")
            description = _first_paragraph(op.get("description"))
            if description:
                what = f"{what}: {description}" if what else description
            rows.append(f"| `{method.upper()} {path}` | {_cell(what)} | {_cell(_inputs(op, schemas))} | {_cell(_answer(op))} |")
    for path, methods in hidden:
        if path == "/mcp":
            rows.append("| `POST/GET/DELETE /mcp` | MCP over streamable HTTP (see mcp.md), same keys and scopes | MCP messages | MCP |")
        elif path:
            rows.append(f"| `{'/'.join(m for m in methods if m != 'HEAD')} {path}` | (not in the OpenAPI document) | | |")
    return "\n".join(rows) + "\n"


def _inputs(op: dict[str, Any], schemas: dict[str, Any]) -> str:
    parts = []
    query = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
    if query:
        parts.append("query: " + ", ".join(f"`{q}`" for q in query))
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body:
        refs = [body.get("$ref", "")] + [alt.get("$ref", "") for alt in body.get("anyOf", [])]
        ref = next((r for r in refs if r), "")
        schema = schemas.get(ref.rsplit("/", 1)[-1], body)
        fields = list(schema.get("properties", {}))
        parts.append("body: " + (", ".join(f"`{f}`" for f in fields) if fields else "JSON"))
    return "; ".join(parts)


def _answer(op: dict[str, Any]) -> str:
    for status, response in op.get("responses", {}).items():
        if status.startswith("2"):
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            name = _schema_name(schema)
            return f"`{status}` {name}".strip()
    return ""


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        inner = _schema_name(schema.get("items", {}))
        return f"list of {inner}" if inner else "list"
    return ""


# -- MCP ---------------------------------------------------------------------------------


def mcp_tables() -> str:
    """The profile table and, per family, its tools with hints and descriptions."""
    from memmesh.interfaces.mcp.catalog import FAMILIES, FAMILY_DESCRIPTIONS, PROFILES, resolve_profile, tools_for
    from memmesh.interfaces.mcp.families import BusTools, MemoryTools  # the families module attaches every family

    infos = {
        name: (fn, fn.__mcp_tool__) for cls in (MemoryTools, BusTools) for name, fn in vars(cls).items() if hasattr(fn, "__mcp_tool__")
    }
    out = ["| profile | families | tools |", "|---|---|---|"]
    for profile in PROFILES:
        label = f"`{profile}` (default)" if profile == "core" else f"`{profile}`"
        families = "all" if profile == "full" else ", ".join(PROFILES[profile])
        out.append(f"| {label} | {families} | {len(tools_for(resolve_profile(profile)))} |")
    out.append("")
    out.append(
        "A profile may also be a comma list of profile and family names, e.g.\n`--profile core,archive` or `--profile graph,session`.\n"
    )
    for family, names in FAMILIES.items():
        profiles = ", ".join(p for p in PROFILES if family in resolve_profile(p))
        out.append(f"### {family} — profiles: {profiles}\n")
        out.append(f"{FAMILY_DESCRIPTIONS[family][0].upper()}{FAMILY_DESCRIPTIONS[family][1:]}.\n")
        out.append("| tool | hints | what it does |\n|---|---|---|")
        for name in names:
            fn, info = infos[name]
            hints = [
                h for h, on in (("read-only", info.read_only), ("destructive", info.destructive), ("idempotent", info.idempotent)) if on
            ]
            out.append(f"| `{name}` | {', '.join(hints) or '—'} | {_cell(_first_paragraph(fn.__doc__))} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _public_methods(cls: type) -> list[str]:
    return sorted(name for name, value in vars(cls).items() if callable(value) and not name.startswith("_"))


def client_methods() -> str:
    """Which of ``Memory``'s methods the HTTP ``Client`` has, and which it lacks."""
    from memmesh import Client, Memory

    has = _public_methods(Client)
    lacks = [name for name in _public_methods(Memory) if name not in has]
    return (
        f"`Client` has {', '.join(f'`{name}`' for name in has)}; `AsyncClient` has the same as coroutines "
        "(`aclose` for `close`). They take `Memory`'s arguments, return the same models (the curator "
        "methods and `add(messages=...)` return the server's JSON as dicts) and raise the same errors.\n\n"
        f"Only the embedded `Memory` has {', '.join(f'`{name}`' for name in lacks)}: use them on the "
        "server's host (the `memmesh` CLI or `Memory`), or the [routes](#routes) where one exists."
    )


GENERATORS: dict[str, tuple[Path, Callable[[], str]]] = {
    "cli-help": (DOCS / "cli.md", cli_help),
    "settings": (DOCS / "configuration.md", settings_table),
    "http-routes": (DOCS / "http.md", routes_table),
    "client-methods": (DOCS / "http.md", client_methods),
    "mcp-tools": (DOCS / "mcp.md", mcp_tables),
}


def render(page: Path, text: str, cache: dict[str, str]) -> str:
    """``text`` with every generated region of ``page`` filled in; a region of another page or
    an unknown name is an error (a typo must not leave a region silently unchecked)."""

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in GENERATORS or GENERATORS[name][0] != page:
            raise SystemExit(f"{page.relative_to(ROOT)}: unknown generated region {name!r} (known: {', '.join(GENERATORS)})")
        if name not in cache:
            cache[name] = GENERATORS[name][1]()
        note = f"<!-- generated from the code by `{COMMAND}`; edit the code, not this table -->\n"
        return f"{match.group(1)}{note}\n{cache[name]}\n{match.group(4)}"

    return _REGION.sub(fill, text)


def stale_pages() -> dict[Path, str]:
    """Pages whose generated regions differ from what the code says, with their new text."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH  # rich sizes the --help boxes from it
    try:
        return _stale_pages()
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


def _stale_pages() -> dict[Path, str]:
    cache: dict[str, str] = {}
    changed: dict[Path, str] = {}
    seen: set[str] = set()
    for name, (page, _) in GENERATORS.items():
        if page in changed or name in seen:
            continue
        text = page.read_text(encoding="utf-8")
        found = set(m["name"] for m in _REGION.finditer(text))
        missing = {n for n, (p, _) in GENERATORS.items() if p == page} - found
        if missing:
            raise SystemExit(
                f"{page.relative_to(ROOT)} lacks the region(s) {sorted(missing)}: add <!-- generated:NAME --><!-- /generated -->"
            )
        seen |= found
        new = render(page, text, cache)
        if new != text:
            changed[page] = new
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a region is stale")
    args = parser.parse_args(argv)
    changed = stale_pages()
    if args.check:
        for page in changed:
            print(f"{page.relative_to(ROOT)}: generated region is stale; run `{COMMAND}`", file=sys.stderr)
        return 1 if changed else 0
    for page, text in changed.items():
        page.write_text(text, encoding="utf-8")
        print(f"updated {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
