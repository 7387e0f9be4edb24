"""The layer rules of docs/architecture.md, made executable.

The allow-list lives in the docs page (its json block); this file only reads it and checks
every module of the package: each module belongs to one layer and imports only what its
layer may; no import cycle; no ``x._name`` into another module. The checker is fed planted
violations at the end, one per rule kind, so a checker that stopped biting would fail too.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import memmesh

SRC = Path(memmesh.__file__).parent
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
PRIVATE_OK_OWNERS = {"self", "cls"}


# -- the rules --------------------------------------------------------------------------


@dataclass
class Rules:
    """The json block of docs/architecture.md."""

    layers: dict[str, list[str]]
    may_import: dict[str, set[str]]
    edges: list[tuple[str, str]]
    debts: list[tuple[str, str]]
    third_party: list[tuple[str, str]]
    private_access: list[tuple[str, str]]


def load_rules(markdown: str) -> Rules:
    """The rules from the first json fence after the "rules, as the test reads them" heading."""
    section = markdown.split("## The rules, as the test reads them", 1)[1]
    match = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert match, "docs/architecture.md lost its json block of rules"
    data = json.loads(match.group(1))
    return Rules(
        layers={layer["name"]: layer["modules"] for layer in data["layers"]},
        may_import={layer["name"]: set(layer["may_import"]) for layer in data["layers"]},
        edges=[(a, b) for a, b, _why in data["edges"]],
        debts=[(a, b) for a, b, _why in data["debts"]],
        third_party=[(m, package) for m, package, _why in data["third_party"]],
        private_access=[(m, name) for m, name, _why in data["private_access"]],
    )


def matches(pattern: str, module: str) -> bool:
    """``a.*`` matches ``a`` and everything below it; anything else matches itself only."""
    if pattern.endswith(".*"):
        base = pattern[:-2]
        return module == base or module.startswith(base + ".")
    return module == pattern


def layer_of(module: str, rules: Rules) -> str | None:
    """The layer whose longest pattern matches ``module`` (None: the module is in no layer)."""
    best: tuple[int, str] | None = None
    for name, patterns in rules.layers.items():
        for pattern in patterns:
            if matches(pattern, module):
                weight = len(pattern.removesuffix(".*"))
                if best is None or weight > best[0]:
                    best = (weight, name)
    return best[1] if best else None


# -- reading the source -------------------------------------------------------------------


@dataclass
class Source:
    """Every module of a package: its name, path and parsed tree."""

    root: Path
    package: str
    trees: dict[str, ast.Module] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def read(cls, root: Path) -> Source:
        """Parse every ``*.py`` under ``root`` (the package folder)."""
        source = cls(root=root, package=root.name)
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            source.trees[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            source.paths[name] = path
        return source

    def is_package(self, module: str) -> bool:
        return self.paths[module].name == "__init__.py"

    def imports(self, module: str) -> set[str]:
        """Package modules ``module`` imports anywhere (top level, in functions, under
        TYPE_CHECKING), relative imports resolved; ``from p import name`` counts as
        ``p.name`` when that is a module, else as ``p``."""
        found: set[str] = set()
        for node in ast.walk(self.trees[module]):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = self._resolve(module, node)
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in self.trees else base)
        return {name for name in found if name == self.package or name.startswith(self.package + ".")}

    def foreign_imports(self, module: str) -> set[str]:
        """Top-level names of the other packages ``module`` imports anywhere."""
        found: set[str] = set()
        for node in ast.walk(self.trees[module]):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
        return found - {self.package}

    def _resolve(self, module: str, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        here = module.split(".") if self.is_package(module) else module.split(".")[:-1]
        base = here[: len(here) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))


# -- the checks ---------------------------------------------------------------------------


def unplaced(source: Source, rules: Rules) -> list[str]:
    """Modules that belong to no layer."""
    return [f"{module} belongs to no layer" for module in source.trees if layer_of(module, rules) is None]


def layer_violations(source: Source, rules: Rules) -> list[str]:
    """Imports the allow-list does not permit (debts excepted)."""
    found = []
    for module in source.trees:
        mine = layer_of(module, rules)
        if mine is None:
            continue
        for target in sorted(source.imports(module)):
            theirs = layer_of(target, rules)
            allowed = theirs == mine or theirs in rules.may_import[mine]
            named = any(matches(a, module) and matches(b, target) for a, b in rules.edges + rules.debts)
            if not (allowed or named):
                found.append(f"{module} ({mine}) imports {target} ({theirs})")
    return found


def banned_packages(source: Source, rules: Rules) -> list[str]:
    """Third-party packages a pure module imports although the rules forbid it."""
    return [
        f"{module} imports {package}"
        for module in source.trees
        for pattern, package in rules.third_party
        if matches(pattern, module) and package in source.foreign_imports(module)
    ]


def cycles(source: Source, rules: Rules) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (debts excepted)."""
    graph = {
        module: {t for t in source.imports(module) if t in source.trees and t != module and (module, t) not in rules.debts}
        for module in source.trees
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def _own_private_names(tree: ast.Module) -> set[str]:
    """``_names`` a module defines: functions, classes, assigned names and ``self._x`` attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _owner(node) in PRIVATE_OK_OWNERS:
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {name for name in names if name.startswith("_")}


def _owner(node: ast.Attribute) -> str | None:
    value = node.value
    if isinstance(value, ast.Name):
        return value.id
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
        return "super"
    return None


def private_reach(source: Source, rules: Rules) -> list[str]:
    """``x._name`` where ``_name`` is another module's private (not on self/cls/super())."""
    found = []
    for module, tree in source.trees.items():
        own = _own_private_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            if _owner(node) in PRIVATE_OK_OWNERS | {"super"} or node.attr in own or (module, node.attr) in rules.private_access:
                continue
            found.append(f"{module}:{node.lineno} reaches into {ast.unparse(node)}")
    return found


def stale_debts(source: Source, rules: Rules) -> list[str]:
    """Debts whose import is gone: the list must shrink with the code."""
    return [f"debt {a} -> {b} no longer exists" for a, b in rules.debts if b not in source.imports(a)]


def check(source: Source, rules: Rules) -> list[str]:
    """Every violation of every rule kind."""
    return [
        *unplaced(source, rules),
        *layer_violations(source, rules),
        *banned_packages(source, rules),
        *(f"import cycle: {' -> '.join(group)}" for group in cycles(source, rules)),
        *private_reach(source, rules),
        *stale_debts(source, rules),
    ]


# -- memmesh itself -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(DOC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def source() -> Source:
    return Source.read(SRC)


def test_every_module_belongs_to_a_layer(source: Source, rules: Rules) -> None:
    assert {"memmesh.io.backup", "memmesh.interfaces.cli.app", "memmesh.kernel"} <= set(source.trees)  # every package is read
    assert unplaced(source, rules) == []


def test_imports_follow_the_allow_list(source: Source, rules: Rules) -> None:
    assert layer_violations(source, rules) == []


def test_pure_modules_import_no_banned_package(source: Source, rules: Rules) -> None:
    assert banned_packages(source, rules) == []


def test_no_import_cycles(source: Source, rules: Rules) -> None:
    assert cycles(source, rules) == []


def test_no_module_reaches_into_another_modules_privates(source: Source, rules: Rules) -> None:
    assert private_reach(source, rules) == []


def test_every_listed_debt_is_still_real(source: Source, rules: Rules) -> None:
    assert stale_debts(source, rules) == []


def test_satellites_and_store_contract_stay_below_what_uses_them(source: Source, rules: Rules) -> None:
    """The circles issue 14 names stay broken (a readable guard on top of the general rules)."""
    for satellite in ("memmesh.lifecycle", "memmesh.graph", "memmesh.survey", "memmesh.entities", "memmesh.kernel"):
        assert "memmesh.service" not in source.imports(satellite)
    assert not {m for m in source.imports("memmesh.store.base") if m.startswith("memmesh.store.")}
    assert "memmesh.recall.minilm" not in source.imports("memmesh.recall.model_package")
    assert "memmesh.recall.embedders" not in source.imports("memmesh.recall.minilm")


def test_extensions_get_the_service_as_a_host_and_never_import_it(source: Source) -> None:
    """The modules the service builds around itself are typed against ``memmesh.host.Host``
    (and the session tokens against a small node protocol), so the service sits above them."""
    for extension in (
        "memmesh.audit.log",
        "memmesh.bus.core",
        "memmesh.sessions.core",
        "memmesh.governance.core",
        "memmesh.federation.session",
    ):
        assert "memmesh.service" not in source.imports(extension)
    assert "memmesh.audit.log" not in source.imports("memmesh.audit.capture")  # the kernel imports the capture
    assert "memmesh.federation.replica" not in source.imports("memmesh.federation.digest")
    assert not {m for m in source.imports("memmesh.interfaces.mcp.tools") if m.endswith("_tools")}  # families import tools, not back


# -- the checker bites: one planted violation per rule kind ----------------------------------

PLANTED_RULES = """## The rules, as the test reads them

```json
{
  "layers": [
    {"name": "low", "modules": ["pkg.low.*"], "may_import": []},
    {"name": "high", "modules": ["pkg.high.*", "pkg"], "may_import": ["low"]}
  ],
  "edges": [],
  "debts": [],
  "third_party": [["pkg.low.*", "httpx", "pure"]],
  "private_access": []
}
```
"""


def _plant(tmp_path: Path, files: dict[str, str]) -> list[str]:
    """Write a package ``pkg`` of ``files`` (path → source) and check it."""
    root = tmp_path / "pkg"
    for rel, text in {"__init__.py": "", "low/__init__.py": "", "high/__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return check(Source.read(root), load_rules(PLANTED_RULES))


def test_a_clean_planted_package_passes(tmp_path: Path) -> None:
    assert _plant(tmp_path, {"low/a.py": "X = 1\n", "high/b.py": "from pkg.low.a import X\nfrom ..low import a\n"}) == []


def test_checker_catches_an_upward_absolute_import(tmp_path: Path) -> None:
    assert _plant(tmp_path, {"low/a.py": "import pkg.high.b\n", "high/b.py": ""}) == ["pkg.low.a (low) imports pkg.high.b (high)"]


def test_checker_catches_an_upward_relative_import(tmp_path: Path) -> None:
    found = _plant(tmp_path, {"low/a.py": "from ..high import b\n", "high/b.py": ""})
    assert found == ["pkg.low.a (low) imports pkg.high.b (high)"]


def test_checker_catches_an_import_hidden_in_a_function_or_type_checking(tmp_path: Path) -> None:
    lazy = "def f():\n    from pkg.high import b\n"
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high.b import Y\n"
    high = {"high/b.py": "Y = 1\n"}
    assert _plant(tmp_path / "1", {"low/a.py": lazy, **high}) == ["pkg.low.a (low) imports pkg.high.b (high)"]
    assert _plant(tmp_path / "2", {"low/a.py": typed, **high}) == ["pkg.low.a (low) imports pkg.high.b (high)"]


def test_checker_catches_a_banned_third_party_import(tmp_path: Path) -> None:
    assert _plant(tmp_path, {"low/a.py": "def f():\n    import httpx.auth\n"}) == ["pkg.low.a imports httpx"]


def test_checker_catches_a_module_outside_every_layer(tmp_path: Path) -> None:
    assert _plant(tmp_path, {"stray.py": ""}) == ["pkg.stray belongs to no layer"]


def test_checker_catches_a_cycle_inside_one_layer(tmp_path: Path) -> None:
    found = _plant(tmp_path, {"high/a.py": "from pkg.high import b\n", "high/b.py": "def f():\n    from . import a\n"})
    assert found == ["import cycle: pkg.high.a -> pkg.high.b"]


def test_checker_catches_reach_into_another_modules_private(tmp_path: Path) -> None:
    files = {
        "low/a.py": "class A:\n    def _secret(self):\n        return self._x\n",
        "high/b.py": "from pkg.low.a import A\n\ndef f(a: A):\n    return a._secret()\n",
    }
    assert _plant(tmp_path, files) == ["pkg.high.b:4 reaches into a._secret"]


def test_private_names_of_the_module_itself_are_fine(tmp_path: Path) -> None:
    own = "class A:\n    def _m(self, other: 'A'):\n        return other._m(self) or super()._n()\n\ndef _f(a: A):\n    return a._m(a)\n"
    assert _plant(tmp_path, {"low/a.py": own}) == []


def test_checker_catches_a_debt_that_was_paid(tmp_path: Path) -> None:
    rules = PLANTED_RULES.replace('"debts": []', '"debts": [["pkg.low.a", "pkg.high.b", "fixed already"]]')
    root = tmp_path / "pkg"
    for rel in ("__init__.py", "low/__init__.py", "low/a.py", "high/__init__.py", "high/b.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("", encoding="utf-8")
    assert check(Source.read(root), load_rules(rules)) == ["debt pkg.low.a -> pkg.high.b no longer exists"]


def test_the_doc_names_only_real_modules(source: Source, rules: Rules) -> None:
    """A layer pattern or an edge that matches nothing is a typo that would silently allow nothing."""
    pairs = rules.edges + rules.debts
    patterns: Iterable[str] = (
        [p for ps in rules.layers.values() for p in ps] + [m for pair in pairs for m in pair] + [m for m, _ in rules.third_party]
    )
    assert [p for p in patterns if not any(matches(p, m) for m in source.trees)] == []


# -- the public surface and the error hierarchy ----------------------------------------------


def test_public_surface_is_sorted_and_importable() -> None:
    assert memmesh.__all__ == sorted(memmesh.__all__)
    for name in memmesh.__all__:
        assert getattr(memmesh, name) is not None


def test_every_error_has_a_code_status_and_exit_code() -> None:
    from memmesh.errors import PendingApprovalError, all_error_types

    codes = set()
    for cls in all_error_types():
        codes.add(cls.code)
        body = cls("message").to_dict()
        if cls is PendingApprovalError:  # the one outcome that is not a failure: queued for approval
            assert (cls.http_status, cls.exit_code) == (202, 3)
            assert body == {"status": "pending", "pending_id": None, "error": {"code": cls.code, "message": "message", "details": {}}}
            continue
        assert cls.code and 400 <= cls.http_status < 600 and cls.exit_code in (1, 2)
        assert body == {"error": {"code": cls.code, "message": "message", "details": {}}}
    assert len(codes) == len(all_error_types())


def test_usage_is_set_in_one_place_for_every_error() -> None:
    """``usage=`` lives on MemmeshError's one constructor; no subclass repeats its signature."""
    from memmesh.errors import MemmeshError, all_error_types

    for cls in all_error_types():
        assert "__init__" not in vars(cls) or cls is MemmeshError, cls
        assert cls("m").exit_status == cls.exit_code and cls("m", usage=True).exit_status == 2
        assert not cls("m").usage and cls("m", usage=True).usage
