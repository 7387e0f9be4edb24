"""The layer rules of STYLE.md, made executable: arrows point one way."""

from __future__ import annotations

import ast
from pathlib import Path

import memmesh

SRC = Path(memmesh.__file__).parent

# module prefix -> memmesh modules it must never import (by prefix)
FORBIDDEN = {
    "memmesh.model": ["memmesh.service", "memmesh.store", "memmesh.recall", "memmesh.interfaces", "memmesh.compose", "memmesh.config"],
    "memmesh.errors": ["memmesh."],
    "memmesh.clock": ["memmesh.service", "memmesh.store", "memmesh.interfaces"],
    "memmesh.store": ["memmesh.service", "memmesh.interfaces", "memmesh.compose", "memmesh.config", "memmesh.memory"],
    "memmesh.recall": ["memmesh.service", "memmesh.interfaces", "memmesh.compose", "memmesh.memory"],
    "memmesh.service": ["memmesh.interfaces", "memmesh.compose", "memmesh.config", "memmesh.memory"],
    "memmesh.interfaces.mcp": ["memmesh.interfaces.http", "memmesh.interfaces.client"],
    "memmesh.interfaces.http": ["memmesh.interfaces.client", "memmesh.interfaces.cli"],
    "memmesh.federation": ["memmesh.interfaces", "memmesh.compose", "memmesh.config", "memmesh.memory"],
    "memmesh.federation.changes": ["httpx", "memmesh.service", "memmesh.federation.peers", "memmesh.federation.outbox"],
    "memmesh.federation.quorum": ["httpx", "memmesh.service", "memmesh.store", "memmesh.federation.peers"],
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.startswith("memmesh")}


def test_layer_arrows_point_one_way() -> None:
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        name = module_name(path)
        for prefix, banned in FORBIDDEN.items():
            if name == prefix or name.startswith(prefix + "."):
                for imported in imports_of(path):
                    if any(
                        imported == b.rstrip(".") or imported.startswith(b if b.endswith(".") else b + ".") or imported == b for b in banned
                    ):
                        violations.append(f"{name} imports {imported}")
    assert violations == []


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
