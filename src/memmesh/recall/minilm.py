"""all-MiniLM-L6-v2 on onnxruntime, with the ONNX graph built from safetensors.

Why build the graph ourselves: the weights package ships only PyTorch-format files and
exporting needs torch, which memmesh never installs. The graph is written by
:mod:`memmesh.recall.minilm_graph` (a small BERT: 6 layers, 12 heads, hidden 384, with mean
pooling and L2 normalisation inside, so one ``session.run`` returns finished sentence
vectors); this module caches it, quantises it and runs it.

Graph cache: ``<cache_dir>/models/all-MiniLM-L6-v2-<sha8>.onnx`` (and ``-int8.onnx``),
each with a ``.json`` stamp recording the weights file's path, size and mtime. A cached
graph is reused while the stamp matches, so a normal start never re-hashes the 90 MB
weights; the full SHA-256 check runs whenever a graph is (re)built, and
``memmesh models install --force`` rebuilds from re-verified weights. Files are written to
a temporary name and renamed, so two processes building at once cannot see half a file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memmesh.affinity import all_cpus
from memmesh.errors import EmbedderError
from memmesh.recall.embedder_api import check_texts, health_report
from memmesh.recall.minilm_graph import (  # noqa: F401  (public names re-exported from here)
    DIM,
    GRAPH_FORMAT,
    HEAD_DIM,
    HEADS,
    LAYERS,
    LN_EPS,
    MAX_TOKENS,
    MODEL_NAME,
    OPSET,
    OUTPUT,
    build_graph,
)
from memmesh.recall.model_package import (
    REINSTALL_HINT,
    WEIGHTS_SHA256,
    ModelFiles,
    locate_package,
    verify_tokenizer,
    verify_weights,
)

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

# --------------------------------------------------------------------------- graph cache


def graph_path(cache_dir: Path, *, quantize: bool = False) -> Path:
    """Where the built graph lives; the weights hash in the name ties it to one release."""
    suffix = "-int8" if quantize else ""
    return cache_dir / "models" / f"{MODEL_NAME}-{WEIGHTS_SHA256[:8]}{suffix}.onnx"


def _stamp_path(graph: Path) -> Path:
    return graph.with_name(graph.name + ".json")


def _stamp(files: ModelFiles, graph: Path | None = None) -> dict[str, Any]:
    """What a cached graph was built from: cheap to compare, no hashing."""
    try:
        info = files.weights.stat()
        size = graph.stat().st_size if graph is not None else None
    except OSError as exc:
        raise EmbedderError(f"cannot read {files.weights}: {exc}; {REINSTALL_HINT}") from exc
    return {
        "format": GRAPH_FORMAT,
        "weights": str(files.weights),
        "weights_size": info.st_size,
        "weights_mtime_ns": info.st_mtime_ns,
        "weights_sha256": WEIGHTS_SHA256,
        "graph_size": size,
    }


def _is_fresh(files: ModelFiles, graph: Path) -> bool:
    """True if ``graph`` exists and was built from these very weights by this GRAPH_FORMAT."""
    try:
        recorded = json.loads(_stamp_path(graph).read_text(encoding="utf-8"))
        current = _stamp(files, graph)
    except (OSError, ValueError, EmbedderError):
        return False
    return bool(recorded == current)


def _prepare_dir(directory: Path) -> None:
    """Create the cache directory, failing before an expensive build rather than after it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbedderError(f"cannot write the model cache in {directory}: {exc}") from exc
    if not os.access(directory, os.W_OK):
        raise EmbedderError(f"cannot write the model cache in {directory}: permission denied")


def _write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Let ``write`` fill a temporary file beside ``target``, then rename it into place."""
    _prepare_dir(target.parent)
    try:
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise EmbedderError(f"cannot write the model cache in {target.parent}: {exc}") from exc
    temp = Path(temp_name)
    try:
        write(temp)
        temp.chmod(0o644)  # mkstemp makes 0600; the cache may be shared by a service user
        os.replace(temp, target)
    except OSError as exc:
        raise EmbedderError(f"cannot write the model cache file {target}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def load_weights(files: ModelFiles) -> dict[str, np.ndarray]:
    """Every tensor of the safetensors file as a numpy array."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(files.weights))
    except (OSError, SafetensorError) as exc:
        raise EmbedderError(f"cannot load {files.weights}: {exc}; {REINSTALL_HINT}") from exc


def _build_fp32(files: ModelFiles, target: Path) -> None:
    from onnx.checker import ValidationError

    weights = load_weights(files)
    try:
        blob = build_graph(weights).SerializeToString()
    except (KeyError, ValueError, ValidationError) as exc:
        raise EmbedderError(f"cannot build the ONNX graph from {files.weights}: {exc}; {REINSTALL_HINT}") from exc
    _write_atomically(target, lambda temp: temp.write_bytes(blob))


class _DropQuantizerAdvice(logging.Filter):
    """Hides quantize_dynamic's "consider pre-processing" root-logger warning (not actionable)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _build_int8(fp32: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the weight MatMuls, one scale per output channel.

    Choices, measured against fp32 on LoCoMo dialogue turns (cosine min / mean):
    every weight MatMul in int8 gives 0.977 / 0.991; keeping the six FFN output
    projections (1536 -> 384, the most outlier-prone) in fp32 gives 0.990 / 0.995 for
    about a third less of the int8 speed-up. ``reduce_range`` (7-bit weights) avoids the
    u8*s8 overflow of AVX2/AVX-512 CPUs without VNNI. Activation-by-activation MatMuls
    (attention) stay fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def write(temp: Path) -> None:
        out = temp.with_suffix(".onnx")  # quantize_dynamic wants a .onnx name
        advice = _DropQuantizerAdvice()
        logging.getLogger().addFilter(advice)
        try:
            quantize_dynamic(
                str(fp32),
                str(out),
                per_channel=True,
                reduce_range=True,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
                nodes_to_exclude=[f"encoder.layer.{i}.output.dense.matmul" for i in range(LAYERS)],
                extra_options={"MatMulConstBOnly": True},
            )
            os.replace(out, temp)
        except _ort_errors() as exc:
            raise EmbedderError(f"cannot quantise {fp32}: {exc}") from exc
        finally:
            logging.getLogger().removeFilter(advice)
            with contextlib.suppress(OSError):
                out.unlink()

    _write_atomically(target, write)


def ensure_graph(
    files: ModelFiles, cache_dir: Path, *, quantize: bool = False, announce: Callable[[], None] | None = None
) -> tuple[Path, bool]:
    """Path of an up-to-date cached graph, building it first if needed (``announce`` is
    called just before a build: a caller says "preparing…" only when something will be).

    Returns ``(path, built_now)``. Building verifies the weights' full SHA-256; reusing a
    graph only compares the weights' size and mtime with the stamp written at build time.
    """
    target = graph_path(cache_dir, quantize=quantize)
    if _is_fresh(files, target):
        return target, False
    if announce is not None:
        announce()
    _prepare_dir(target.parent)
    if quantize:
        fp32, _ = ensure_graph(files, cache_dir)
        _build_int8(fp32, target)
    else:
        verify_weights(files)
        _build_fp32(files, target)
    stamp = json.dumps(_stamp(files, target), indent=1)
    _write_atomically(_stamp_path(target), lambda temp: temp.write_text(stamp, encoding="utf-8"))
    return target, True


def clear_graph_cache(cache_dir: Path) -> list[Path]:
    """Delete the cached graphs (fp32 and int8) and their stamps; returns what was removed."""
    removed = []
    for quantize in (False, True):
        graph = graph_path(cache_dir, quantize=quantize)
        for path in (graph, _stamp_path(graph)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


# --------------------------------------------------------------------------- runtime


def _ort_errors() -> tuple[type[Exception], ...]:
    """onnxruntime's own exception classes (they derive from Exception directly)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    found = [value for value in vars(state).values() if isinstance(value, type) and issubclass(value, Exception)]
    return tuple(found)


def _open_session(graph: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the optimiser's notes are noise to users
    try:
        return ort.InferenceSession(str(graph), sess_options=options, providers=["CPUExecutionProvider"])
    except _ort_errors() as exc:
        raise EmbedderError(f"onnxruntime cannot load {graph}: {exc}") from exc


def _load_tokenizer(files: ModelFiles) -> tokenizers.Tokenizer:
    """The WordPiece tokenizer, truncating to MAX_TOKENS and never padding.

    Its settings are fixed here and never changed afterwards: the Rust object may then be
    shared by threads (only changing truncation/padding while encoding is unsafe).
    """
    from tokenizers import Tokenizer

    verify_tokenizer(files)
    try:
        tokenizer = Tokenizer.from_file(str(files.tokenizer))
    except Exception as exc:  # tokenizers raises bare Exception for unreadable JSON
        raise EmbedderError(f"cannot load {files.tokenizer}: {exc}; {REINSTALL_HINT}") from exc
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


@dataclass(frozen=True)
class _Runtime:
    session: onnxruntime.InferenceSession
    tokenizer: tokenizers.Tokenizer
    graph: Path
    errors: tuple[type[Exception], ...]


def _batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Indices grouped shortest-first so each batch pads to a similar length."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _pad(sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and attention_mask padded with 0 to the longest sequence of the batch."""
    longest = max(len(ids) for ids in sequences)
    input_ids = np.zeros((len(sequences), longest), dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return input_ids, mask


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d), offline on onnxruntime.

    Construction only records settings. The first ``embed``/``health`` locates the weights
    package, builds or reuses the cached graph and opens one onnxruntime session, under a
    lock so concurrent first calls load once; the session is then shared by all threads.
    """

    dim = DIM

    def __init__(self, *, cache_dir: Path, quantize: bool = False, batch_size: int = 64, threads: int | None = None) -> None:
        self.model_id = f"{MODEL_NAME}@int8" if quantize else MODEL_NAME
        self._cache_dir = Path(cache_dir)
        self._quantize = quantize
        self._batch_size = batch_size
        self._threads = threads or os.cpu_count() or 1
        self._runtime: _Runtime | None = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors in input order; inputs are sorted by length into batches internally."""
        items = check_texts(texts)
        out = np.zeros((len(items), DIM), dtype=np.float32)
        if not items:
            return out
        runtime = self._load()
        encoded = [encoding.ids for encoding in runtime.tokenizer.encode_batch(items)]
        for indices in _batches([len(ids) for ids in encoded], self._batch_size):
            input_ids, mask = _pad([encoded[i] for i in indices])
            try:
                (vectors,) = runtime.session.run([OUTPUT], {"input_ids": input_ids, "attention_mask": mask})
            except runtime.errors as exc:
                raise EmbedderError(f"onnxruntime failed to run {runtime.graph.name}: {exc}") from exc
            out[indices] = vectors
        return out

    def health(self) -> dict[str, Any]:
        """Loads the model if needed and embeds one text."""
        return health_report(self)

    @property
    def graph(self) -> Path:
        """The ONNX file this embedder runs (built on first load)."""
        return graph_path(self._cache_dir, quantize=self._quantize)

    def _load(self) -> _Runtime:
        runtime = self._runtime
        if runtime is not None:
            return runtime
        with self._lock:
            if self._runtime is None:
                with all_cpus():  # onnxruntime's thread pool keeps every core when the Python threads are pinned (affinity.py)
                    self._runtime = self._open()
            return self._runtime

    def _open(self) -> _Runtime:
        files = locate_package()
        tokenizer = _load_tokenizer(files)
        graph, built = ensure_graph(files, self._cache_dir, quantize=self._quantize)
        try:
            session = _open_session(graph, self._threads)
        except EmbedderError:
            if built:
                raise
            # a cached file that no longer loads (disk trouble, edited by hand): rebuild once
            clear_graph_cache(self._cache_dir)
            graph, _ = ensure_graph(files, self._cache_dir, quantize=self._quantize)
            session = _open_session(graph, self._threads)
        return _Runtime(session=session, tokenizer=tokenizer, graph=graph, errors=_ort_errors())
