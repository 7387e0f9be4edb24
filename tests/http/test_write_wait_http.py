"""``POST /api/v1/memories?wait=true`` (and ``/memories/batch``): the answer comes once the
vector is stored; by default the answer comes at commit and the vector follows (issue 19)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from http_support import Running

from memmesh.recall.embedder_api import Embedder

STORED_STEP = 2e-3
"""How far a stored vector may be from the embedder's: SQLite keeps 8 bits a dimension
(max|x| / 127 per step, half a step of rounding), PostgreSQL float16."""

JSON = {"Content-Type": "application/json"}


class Gate:
    """The server's real embedder behind a gate the test opens (so "the answer came before
    the embedder ran" is observed, not timed)."""

    def __init__(self, real: Embedder) -> None:
        self.real, self.model_id, self.opened = real, real.model_id, threading.Event()

    @property
    def dim(self) -> int:
        return self.real.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        assert self.opened.wait(60)
        return self.real.embed(texts)

    def health(self) -> dict[str, Any]:
        return self.real.health()


def test_add_answers_at_commit_and_wait_true_answers_with_the_vector_stored(serve: Callable[..., Running]) -> None:
    running = serve(embeddings={"provider": "minilm"})
    service = running.service
    assert service is not None and service.embedder is not None and service.background is not None
    gate = Gate(service.embedder)
    service.embedder = gate
    http = running.http()

    quick = http.post("/api/v1/memories", json={"content": "The loading dock opens at six"}, headers=JSON)
    assert quick.status_code == 201, quick.text
    quick_id = quick.json()["id"]
    assert service.store.get_vectors([quick_id]) == []  # answered before the embedder ran
    found = http.get("/api/v1/search", params={"q": "loading dock"}).json()["hits"]
    assert [h["memory"]["id"] for h in found] == [quick_id]  # by keyword at once

    gate.opened.set()
    waited = http.post("/api/v1/memories", params={"wait": "true"}, json={"content": "Visitors sign in at reception"}, headers=JSON)
    assert waited.status_code == 201, waited.text
    assert len(service.store.get_vectors([waited.json()["id"]])) == 1  # stored before the answer
    batch = http.post(
        "/api/v1/memories/batch", params={"wait": "true"}, json={"items": [{"content": "Badges expire yearly"}]}, headers=JSON
    )
    assert batch.status_code == 201, batch.text
    assert len(service.store.get_vectors([batch.json()[0]["id"]])) == 1

    hits = http.post("/api/v1/recall", json={"query": "what time can trucks use the dock?", "mode": "vector", "touch": False}, headers=JSON)
    assert hits.status_code == 200 and quick_id in [h["memory"]["id"] for h in hits.json()["hits"]]


def test_a_bad_wait_value_is_refused_and_stores_nothing(serve: Callable[..., Running]) -> None:
    running = serve()
    http = running.http()
    bad = http.post("/api/v1/memories", params={"wait": "maybe"}, json={"content": "not stored"}, headers=JSON)
    assert bad.status_code in (400, 422), bad.text
    assert "wait" in bad.text
    assert http.get("/api/v1/memories").json()["items"] == []


def test_the_client_passes_wait(serve: Callable[..., Running]) -> None:
    running = serve(embeddings={"provider": "minilm"})
    service = running.service
    assert service is not None and service.embedder is not None
    gate = Gate(service.embedder)
    gate.opened.set()
    client = running.client()
    added = client.add("The night bus leaves at midnight", wait=True)
    assert len(service.store.get_vectors([added.id])) == 1
    many = client.add_many(["The ferry runs hourly"], wait=True)
    assert len(service.store.get_vectors([many[0].id])) == 1
    service.embedder = gate  # an update that waits gets the new text's vector before the answer
    updated = client.update(added.id, content="The night bus now leaves at one", wait=True)
    (row,) = service.store.get_vectors([updated.id])
    assert np.allclose(row.vector, gate.real.embed([updated.content])[0], atol=STORED_STEP)
