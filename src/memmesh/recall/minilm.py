"""all-MiniLM-L6-v2 on onnxruntime, with the ONNX graph built here from safetensors.

Why build the graph ourselves: the weights package ships only PyTorch-format files and
exporting needs torch, which memmesh never installs. The model is a small BERT (6 layers,
12 heads, hidden 384), so writing its graph with ``onnx.helper`` is a few dozen nodes per
layer; mean pooling and L2 normalisation are part of the graph, so one ``session.run``
returns finished sentence vectors.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memmesh.errors import EmbedderError
from memmesh.recall.embedder_api import check_texts, health_report
from memmesh.recall.model_package import (
    REINSTALL_HINT,
    WEIGHTS_SHA256,
    ModelFiles,
    locate_package,
    verify_tokenizer,
    verify_weights,
)

if TYPE_CHECKING:
    import onnx
    import onnxruntime
    import tokenizers

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
LAYERS = 6
HEADS = 12
HEAD_DIM = DIM // HEADS
LN_EPS = 1e-12
OPSET = 17  # first opset with LayerNormalization
#: Bump when build_graph or the int8 recipe changes, so older cached graphs are rebuilt.
GRAPH_FORMAT = 2
OUTPUT = "embeddings"
_MASK_BIAS = -10000.0  # added to attention scores at padding positions (as in BERT)


# --------------------------------------------------------------------------- graph


class _GraphWriter:
    """Accumulates nodes and initializers and hands out unique tensor names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value: np.ndarray | np.generic | Sequence[float] | Sequence[int], stem: str = "c") -> str:
        from onnx import numpy_helper

        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        name = self._name(stem)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ops(self, op_type: str, *inputs: str, outputs: int, node: str | None = None, **attrs: Any) -> list[str]:
        """Add one node with ``outputs`` outputs; returns their names.

        ``node`` names the node itself, for the ones quantisation must be able to find.
        """
        from onnx import helper

        names = [self._name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=node or self._name("n"), **attrs))
        return names

    def op(self, op_type: str, *inputs: str, node: str | None = None, **attrs: Any) -> str:
        """Add a single-output node; returns the output's name."""
        return self.ops(op_type, *inputs, outputs=1, node=node, **attrs)[0]


def _layer_norm(g: _GraphWriter, w: Mapping[str, np.ndarray], prefix: str, x: str) -> str:
    scale, bias = g.const(w[f"{prefix}.weight"]), g.const(w[f"{prefix}.bias"])
    return g.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=LN_EPS)


def _dense(g: _GraphWriter, w: Mapping[str, np.ndarray], prefix: str, x: str) -> str:
    """x @ W.T + b, with W stored pre-transposed so the MatMul needs no Transpose node."""
    weight = g.const(w[f"{prefix}.weight"].T, "w")
    product = g.op("MatMul", x, weight, node=f"{prefix}.matmul")
    return g.op("Add", product, g.const(w[f"{prefix}.bias"], "b"))


def _embeddings(g: _GraphWriter, w: Mapping[str, np.ndarray]) -> str:
    """Word + position + token-type embeddings, then LayerNorm.

    memmesh always embeds single sentences, so every token type is 0: that row is
    folded into the position table instead of adding a third input.
    """
    words = g.const(w["embeddings.word_embeddings.weight"], "word_embeddings")
    positions = w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    table = g.const(positions, "position_embeddings")
    seq_len = g.op("Shape", "input_ids", start=1, end=2)
    pos = g.op("Slice", table, g.const([0]), seq_len, g.const([0]))
    summed = g.op("Add", g.op("Gather", words, "input_ids", axis=0), pos)
    return _layer_norm(g, w, "embeddings.LayerNorm", summed)


def _self_attention(g: _GraphWriter, w: Mapping[str, np.ndarray], prefix: str, x: str, mask_bias: str) -> str:
    """12-head scaled dot-product attention with Q, K, V in one fused MatMul.

    1/sqrt(head_dim) is folded into the query weights at build time.
    """
    scale = 1.0 / np.sqrt(HEAD_DIM)
    q_w, q_b = w[f"{prefix}.query.weight"] * scale, w[f"{prefix}.query.bias"] * scale
    qkv_w = np.concatenate([q_w.T, w[f"{prefix}.key.weight"].T, w[f"{prefix}.value.weight"].T], axis=1)
    qkv_b = np.concatenate([q_b, w[f"{prefix}.key.bias"], w[f"{prefix}.value.bias"]])
    qkv = g.op("Add", g.op("MatMul", x, g.const(qkv_w, "w_qkv")), g.const(qkv_b, "b_qkv"))
    q, k, v = g.ops("Split", qkv, g.const([DIM, DIM, DIM]), outputs=3, axis=2)
    heads = g.const([0, 0, HEADS, HEAD_DIM])
    q = g.op("Transpose", g.op("Reshape", q, heads), perm=[0, 2, 1, 3])  # [B, h, S, d]
    k = g.op("Transpose", g.op("Reshape", k, heads), perm=[0, 2, 3, 1])  # [B, h, d, S]
    v = g.op("Transpose", g.op("Reshape", v, heads), perm=[0, 2, 1, 3])  # [B, h, S, d]
    scores = g.op("Add", g.op("MatMul", q, k), mask_bias)
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    return g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), g.const([0, 0, DIM]))


def _gelu(g: _GraphWriter, x: str) -> str:
    """Exact (erf) GELU in the node pattern onnxruntime fuses into one Gelu kernel."""
    erf = g.op("Erf", g.op("Div", x, g.const(np.float32(np.sqrt(2.0)))))
    return g.op("Mul", g.op("Mul", x, g.op("Add", erf, g.const(np.float32(1.0)))), g.const(np.float32(0.5)))


def _encoder_layer(g: _GraphWriter, w: Mapping[str, np.ndarray], index: int, x: str, mask_bias: str) -> str:
    p = f"encoder.layer.{index}"
    context = _self_attention(g, w, f"{p}.attention.self", x, mask_bias)
    attended = _dense(g, w, f"{p}.attention.output.dense", context)
    x = _layer_norm(g, w, f"{p}.attention.output.LayerNorm", g.op("Add", attended, x))
    hidden = _gelu(g, _dense(g, w, f"{p}.intermediate.dense", x))
    out = _dense(g, w, f"{p}.output.dense", hidden)
    return _layer_norm(g, w, f"{p}.output.LayerNorm", g.op("Add", out, x))


def _mean_pool_l2(g: _GraphWriter, x: str, mask: str) -> str:
    """Average the token vectors where the mask is 1, then scale each row to length 1."""
    weights = g.op("Unsqueeze", mask, g.const([2]))  # [B, S, 1]
    summed = g.op("ReduceSum", g.op("Mul", x, weights), g.const([1]), keepdims=0)
    count = g.op("ReduceSum", weights, g.const([1]), keepdims=0)  # [B, 1]
    mean = g.op("Div", summed, g.op("Max", count, g.const(np.float32(1e-9))))
    norm = g.op("ReduceL2", mean, axes=[1], keepdims=1)
    return g.op("Div", mean, g.op("Max", norm, g.const(np.float32(1e-12))))


def build_graph(weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The whole sentence encoder as an ONNX model.

    Inputs ``input_ids`` and ``attention_mask`` (int64, [batch, seq]); output
    ``embeddings`` (float32, [batch, 384], rows of length 1).
    """
    from onnx import TensorProto, checker, helper

    g = _GraphWriter()
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)  # [B, S]
    inverted = g.op("Sub", g.const(np.float32(1.0)), mask)
    mask_bias = g.op("Unsqueeze", g.op("Mul", inverted, g.const(np.float32(_MASK_BIAS))), g.const([1, 2]))
    x = _embeddings(g, weights)
    for index in range(LAYERS):
        x = _encoder_layer(g, weights, index, x, mask_bias)
    pooled = _mean_pool_l2(g, x, mask)
    g.nodes.append(helper.make_node("Identity", [pooled], [OUTPUT], name="output"))
    graph = helper.make_graph(
        g.nodes,
        MODEL_NAME,
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", DIM])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="memmesh")
    model.ir_version = 8  # the IR that goes with opset 17; older runtimes accept it
    checker.check_model(model)
    return model


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


def ensure_graph(files: ModelFiles, cache_dir: Path, *, quantize: bool = False) -> tuple[Path, bool]:
    """Path of an up-to-date cached graph, building it first if needed.

    Returns ``(path, built_now)``. Building verifies the weights' full SHA-256; reusing a
    graph only compares the weights' size and mtime with the stamp written at build time.
    """
    target = graph_path(cache_dir, quantize=quantize)
    if _is_fresh(files, target):
        return target, False
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
