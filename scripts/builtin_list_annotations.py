"""Rewrite ``list[...]`` as ``builtins.list[...]`` in the signatures of classes that define a
method named ``list``.

Inside such a class, mypy resolves ``list`` in a signature to the method, not the builtin
("Function ... is not valid as a type"). Renaming the method would change the store's
public contract, so the annotations name the builtin instead. Method bodies are left alone
(there ``list`` is the builtin). Adds ``import builtins`` when needed; run ruff afterwards.

    python scripts/builtin_list_annotations.py src/memmesh/store/sqlite.py src/memmesh/store/postgres.py
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path


def shadowed_spots(tree: ast.Module) -> list[tuple[int, int]]:
    """(line, column) of every ``list`` name in a signature of a class that defines ``list``."""
    spots: list[tuple[int, int]] = []
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        methods = [n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        if not any(m.name == "list" for m in methods):
            continue
        annotations: list[ast.expr] = [n.annotation for n in cls.body if isinstance(n, ast.AnnAssign)]
        for method in methods:
            args = method.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, *(a for a in (args.vararg, args.kwarg) if a)]
            annotations += [a.annotation for a in every if a.annotation is not None]
            annotations += [method.returns] if method.returns is not None else []
        for annotation in annotations:
            spots += [(n.lineno, n.col_offset) for n in ast.walk(annotation) if isinstance(n, ast.Name) and n.id == "list"]
    return spots


def rewrite(text: str) -> str:
    """``text`` with every shadowed ``list`` annotation naming the builtin."""
    lines = text.split("\n")
    spots = shadowed_spots(ast.parse(text))
    for line, col in sorted(spots, reverse=True):
        lines[line - 1] = lines[line - 1][:col] + "builtins.list" + lines[line - 1][col + len("list") :]
    out = "\n".join(lines)
    if spots and not re.search(r"^import builtins$", out, re.M):
        out = out.replace("from __future__ import annotations\n", "from __future__ import annotations\n\nimport builtins\n", 1)
    return out


def main(paths: list[str]) -> int:
    for name in paths:
        path = Path(name)
        before = path.read_text(encoding="utf-8")
        after = rewrite(before)
        if after != before:
            path.write_text(after, encoding="utf-8")
            print(f"{path}: rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
