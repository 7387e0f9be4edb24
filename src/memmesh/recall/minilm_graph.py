"""The all-MiniLM-L6-v2 sentence encoder written as an ONNX graph with ``onnx.helper``.

Split out of :mod:`memmesh.recall.minilm` (which caches, quantises and runs the graph)
because building it is a self-contained piece of model arithmetic: a small BERT (6 layers,
12 heads, hidden 384) plus mean pooling and L2 normalisation, so one ``session.run``
returns finished sentence vectors. Nothing here touches files, caches or onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

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
