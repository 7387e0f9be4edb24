"""Turning text into vectors: the ``Embedder`` protocol, the factory, the HTTP embedder.

Three providers, picked by configuration through :func:`build_embedder`:

- ``"minilm"`` (default): all-MiniLM-L6-v2 on onnxruntime, offline, no torch
  (:mod:`memmesh.recall.minilm`).
- ``"openai"``: any OpenAI-compatible ``/v1/embeddings`` server (Ollama, vLLM, OpenAI).
- ``"none"``: no embedder at all; recall runs keyword-only.

Every embedder is cheap to construct and loads on first use, so ``memmesh --help`` and
keyword-only commands never pay for onnxruntime or a network round-trip; that is also
why onnxruntime, onnx, tokenizers and httpx are imported only inside functions.
Each vector is stored with ``model_id``; two embedders with different ids live in
different vector spaces and their vectors are never compared.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from memmesh.errors import EmbedderError, InvalidInputError
from memmesh.recall.embedder_api import HEALTH_TEXT, Embedder, check_texts, health_report, normalise_rows
from memmesh.redact import scrub

if TYPE_CHECKING:
    import httpx

PROVIDERS = ("minilm", "openai", "none")
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"


# --------------------------------------------------------------------------- OpenAI-compatible


def embeddings_endpoint(url: str) -> str:
    """``{base}/v1/embeddings`` from a base URL given with or without ``/v1``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInputError(f"embedding server url must be http(s)://host[:port][/v1], got {url!r}")
    base = url.strip().rstrip("/").removesuffix("/v1")
    return f"{base}/v1/embeddings"


def _display_url(url: str) -> str:
    """The URL for error messages: without user:password@ and trailing slashes."""
    parts = urlsplit(url.strip())
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``POST /v1/embeddings`` server.

    The dimension is whatever the server's model produces: if not configured it is
    learnt from the first response (reading ``dim`` before that sends one probe request),
    and every later response must match it.
    """

    def __init__(
        self,
        *,
        model: str,
        url: str = DEFAULT_OPENAI_URL,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        dim: int | None = None,
        batch_size: int = 64,
    ) -> None:
        self._endpoint = embeddings_endpoint(url)
        self._url = _display_url(url)
        self._model = model
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._batch_size = batch_size
        self._dim = dim
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        host = (urlsplit(self._endpoint).hostname or "").lower()
        port = urlsplit(self._endpoint).port
        self.model_id = f"openai:{model}@{host}" + (f":{port}" if port else "")

    @property
    def dim(self) -> int:
        """Vector length; asks the server once if it was not configured."""
        if self._dim is None:
            self.embed([HEALTH_TEXT])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed in batches of ``batch_size`` requests; rows come back in input order."""
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = [self._request(items[i : i + self._batch_size]) for i in range(0, len(items), self._batch_size)]
        return normalise_rows(np.concatenate(chunks, axis=0), f"embedding server at {self._url}")

    def health(self) -> dict[str, Any]:
        """One real request to the server."""
        return health_report(self)

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                self._client = httpx.Client(timeout=self._timeout_s, headers=headers)
            return self._client

    def _request(self, batch: list[str]) -> np.ndarray:
        import httpx

        try:
            response = self._http().post(self._endpoint, json={"model": self._model, "input": batch})
        except (httpx.TimeoutException, httpx.NetworkError) as exc:
            raise EmbedderError(f"embedding server at {self._url} is unreachable: {exc or type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise EmbedderError(f"embedding request to {self._url} failed: {exc or type(exc).__name__}") from exc
        if not response.is_success:
            snippet = scrub(" ".join(response.text.split()), self._api_key)[:200]  # servers may echo the key
            raise EmbedderError(
                f"embedding server at {self._url} answered HTTP {response.status_code}: {snippet}",
                details={"status": response.status_code},
            )
        return self._parse(response, expected=len(batch))

    def _parse(self, response: httpx.Response, expected: int) -> np.ndarray:
        """Rows ordered by ``index``; count and dimension checked against what we asked/know."""
        where = f"embedding server at {self._url}"
        try:
            data = response.json()["data"]
            rows = sorted(data, key=lambda item: item.get("index", 0))
            vectors = [item["embedding"] for item in rows]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EmbedderError(f"{where} sent a response that is not an embeddings list: {exc}") from exc
        if len(vectors) != expected:
            raise EmbedderError(f"{where} returned {len(vectors)} vectors for {expected} texts")
        lengths = {len(vector) if isinstance(vector, list) else -1 for vector in vectors}
        if len(lengths) != 1 or -1 in lengths:
            raise EmbedderError(f"{where} returned vectors of inconsistent dimensions {sorted(lengths)}")
        found = lengths.pop()
        if self._dim is not None and found != self._dim:
            raise EmbedderError(f"{where} returned {found}-dimensional vectors, expected {self._dim}")
        try:
            matrix = np.asarray(vectors, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise EmbedderError(f"{where} returned non-numeric vectors: {exc}") from exc
        self._dim = found
        return matrix


# --------------------------------------------------------------------------- factory


def build_embedder(
    provider: str,
    *,
    model: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    quantize: bool = False,
    cache_dir: Path,
    timeout_s: float = 30.0,
    dim: int | None = None,
    batch_size: int = 64,
) -> Embedder | None:
    """The configured embedder, or None for keyword-only mode. Cheap: nothing loads yet.

    ``model``, ``url``, ``api_key`` and ``dim`` are for the openai provider and ignored by
    minilm; ``quantize`` is for minilm and ignored by openai.
    """
    name = provider.strip().lower()
    if name not in PROVIDERS:
        raise InvalidInputError(f"unknown embedding provider {provider!r}; choose one of: {', '.join(PROVIDERS)}")
    if batch_size < 1:
        raise InvalidInputError(f"embedding batch_size must be at least 1, got {batch_size}")
    if timeout_s <= 0:
        raise InvalidInputError(f"embedding timeout_s must be positive, got {timeout_s}")
    if dim is not None and dim < 1:
        raise InvalidInputError(f"embedding dim must be positive, got {dim}")
    if name == "none":
        return None
    if name == "openai":
        if not model:
            raise InvalidInputError("the openai embedding provider needs a model name (e.g. nomic-embed-text)")
        return OpenAIEmbedder(
            model=model,
            url=url or DEFAULT_OPENAI_URL,
            api_key=api_key,
            timeout_s=timeout_s,
            dim=dim,
            batch_size=batch_size,
        )
    from memmesh.recall.minilm import MiniLMEmbedder

    # model, url, api_key and dim configure the openai provider only (see [embeddings]);
    # a config that switches provider back to minilm may still carry them.
    return MiniLMEmbedder(cache_dir=cache_dir, quantize=quantize, batch_size=batch_size)


__all__ = ["DEFAULT_OPENAI_URL", "PROVIDERS", "Embedder", "OpenAIEmbedder", "build_embedder", "embeddings_endpoint"]
