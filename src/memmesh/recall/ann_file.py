"""The HNSW graph of the vector index, saved beside a SQLite database between processes.

Why: building the graph over 100k vectors costs ~40 s of one core, so a process that had to
build it at every start would search exactly (the slow path the graph replaces) for its
first minute, and every start would burn that CPU again. The graph is saved once built and
loaded by the next process in a fraction of a second; the index then applies the vector
changes made since (:meth:`memmesh.recall.index.VectorIndex._load_saved_ann`).

Two files: ``<path>.usearch`` (usearch's own format, keys 0..n-1) and ``<path>.json`` (the
ids in key order, the embedding model, the dimension and the store's change counter the
graph is current at). Each is written to a temporary name and renamed, the graph first and
its description last, so a crash leaves either the old pair, or a graph without a matching
description, which :func:`load` refuses. The files are a cache: anything unexpected in them
means "build again", never an error for the caller.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from usearch.index import Index as UsearchIndex

FORMAT = 1


@dataclass(frozen=True)
class Meta:
    """What a saved graph holds: key ``i`` is ``ids[i]``'s vector of ``model`` at change ``seq``."""

    model: str
    dim: int
    seq: int
    ids: list[str]


def usearch_index() -> type[UsearchIndex]:
    """usearch's ``Index`` class, imported only after onnxruntime.

    Why: with the pinned wheels (usearch 2.26, onnxruntime 1.32), importing onnxruntime
    *after* usearch kills the process with a segmentation fault (``python -c "import usearch;
    import onnxruntime"``). ``memmesh serve`` loads the vector index at start-up (saved graph
    or build) before the embedder's first use, so its first recall crashed the server on any
    store at or above ``recall.ann_threshold``. The other order is safe; onnxruntime is a
    dependency, so importing it first costs only its import time, once."""
    with contextlib.suppress(ImportError):  # a dependency; without it there is no MiniLM to crash
        importlib.import_module("onnxruntime")
    from usearch.index import Index

    return Index


def paths(path: Path) -> tuple[Path, Path]:
    """The graph file and its description."""
    return path.with_name(path.name + ".usearch"), path.with_name(path.name + ".json")


def save(path: Path, graph: UsearchIndex, meta: Meta) -> None:
    """Write the graph and its description (each atomically, the description last)."""
    graph_path, meta_path = paths(path)
    tmp_graph = graph_path.with_name(f"{graph_path.name}.{os.getpid()}.tmp")
    tmp_meta = meta_path.with_name(f"{meta_path.name}.{os.getpid()}.tmp")
    try:
        graph.save(str(tmp_graph))
        description = {
            "format": FORMAT,
            "model": meta.model,
            "dim": meta.dim,
            "seq": meta.seq,
            "size": len(meta.ids),
            "graph_bytes": tmp_graph.stat().st_size,
            "ids": meta.ids,
        }
        tmp_meta.write_text(json.dumps(description), encoding="utf-8")
        tmp_graph.replace(graph_path)
        tmp_meta.replace(meta_path)
    finally:
        for leftover in (tmp_graph, tmp_meta):  # after a failure part-way (a full disk)
            leftover.unlink(missing_ok=True)


def view(path: Path) -> UsearchIndex | None:
    """The saved graph memory-mapped read-only (searches only)."""
    graph_path, _meta = paths(path)
    viewed: UsearchIndex | None = usearch_index().restore(str(graph_path), view=True)
    return viewed


def load(path: Path, model: str, dim: int, seq: int, *, view: bool = False) -> tuple[UsearchIndex, Meta] | None:
    """The saved graph when it is of ``model`` and ``dim``, no newer than change ``seq`` and
    whole (``view``: memory-mapped read-only); None otherwise. A torn, foreign or other model's pair is removed so the next
    build replaces it; one newer than ``seq`` (another process saw more) is left alone."""
    graph_path, meta_path = paths(path)
    if not meta_path.exists() or not graph_path.exists():
        return None
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
        ids = [str(i) for i in raw["ids"]]
        meta = Meta(model=str(raw["model"]), dim=int(raw["dim"]), seq=int(raw["seq"]), ids=ids)
        if meta.seq > seq:
            return None  # saved by a process that has seen newer changes than this one: leave it
        whole = (
            raw.get("format") == FORMAT
            and meta.model == model
            and meta.dim == dim
            and meta.seq >= 0
            and int(raw["size"]) == len(ids)
            and int(raw["graph_bytes"]) == graph_path.stat().st_size
        )
        if not whole:
            remove(path)
            return None
        graph = usearch_index().restore(str(graph_path), view=view)
        if graph is None or len(graph) != len(ids) or graph.ndim != dim:
            remove(path)
            return None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        remove(path)
        return None
    return graph, meta


def remove(path: Path) -> None:
    """Delete a saved graph (nothing to do when there is none)."""
    for file in paths(path):
        try:
            file.unlink()
        except FileNotFoundError:
            continue
        except OSError:  # a read-only folder: the next process finds the same files and refuses them too
            continue
