"""Cheap catch-up (issue 24): a change travels with its embedding, so a node catching up
stores the sender's vector instead of embedding every text again, and items that lose the
merge cost no embedding at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memmesh.compose import build
from memmesh.config import load_settings
from memmesh.errors import InvalidInputError
from memmesh.federation.changes import SyncBatch, SyncItem, SyncPage, parse_batch
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.service import Service


class CountingEmbedder:
    """Wraps a node's real embedder and counts the texts it embeds."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed(texts)


def node(tmp_path: Path, name: str) -> Service:
    settings = load_settings(
        None,
        overrides={"storage": {"url": f"sqlite:///{tmp_path}/{name}.db", "node_id": name}, "embeddings": {"provider": "minilm"}},
        env={"MEMMESH_CONFIG": ""},
    )
    service = build(settings)
    return service


def test_a_catch_up_stores_the_senders_vectors_without_embedding_again(tmp_path: Path) -> None:
    a, b = node(tmp_path, "node-a"), node(tmp_path, "node-b")
    a.replica.known("node-b", None)
    b.replica.known("node-a", None)
    written = a.add_many(
        [{"content": f"the build server number {i} runs nightly jobs", "namespace": "ops"} for i in range(20)],
        principal=P,
        wait=True,  # vectors stored before the feed is read, so the feed carries them
    )
    counting = CountingEmbedder(b.embedder)
    b.embedder = counting

    page = a.replica.feed(peer="node-b", since=0, limit=500, principal=P)
    assert all(item.vector and item.vector_model == a.embedder.model_id for item in page.items if item.memory is not None)
    wire = parse_batch(page.model_dump(mode="json"), SyncPage)  # as it travels
    report = b.replica.apply(wire, principal=P)

    assert report.applied == 20 and counting.texts == 0
    ids = [m.id for m in written]
    theirs = {row.memory_id: row.vector for row in a.store.get_vectors(ids)}
    ours = {row.memory_id: row.vector for row in b.store.get_vectors(ids)}
    assert ours.keys() == theirs.keys() == set(ids)
    assert all(np.array_equal(ours[i], theirs[i]) for i in ids)
    hits = b.recall("which server runs jobs at night?", principal=P).hits
    assert hits and hits[0].memory.namespace == "ops"

    # an update a already holds a newer version of costs no embedding on a
    a.update(ids[0], {"content": "the build server number 0 was retired"}, principal=P, wait=True)
    b.update(ids[1], {"content": "server one moved to the new rack"}, principal=P, wait=True)
    before = counting.texts
    back = b.replica.feed(peer="node-a", since=0, limit=500, principal=P)
    for item in back.items:
        item.vector = item.vector_model = None  # nothing shipped: only what wins may be embedded
    a_counting = CountingEmbedder(a.embedder)
    a.embedder = a_counting
    a.replica.apply(parse_batch(back.model_dump(mode="json"), SyncPage), principal=P)
    assert a_counting.texts == 1  # only b's update of ids[1] won; the rest a held already
    assert counting.texts == before
    for service in (a, b):
        service.store.close()


def test_a_shipped_vector_of_another_model_or_shape_is_not_trusted(tmp_path: Path) -> None:
    a, b = node(tmp_path, "node-a"), node(tmp_path, "node-b")
    a.replica.known("node-b", None)
    b.replica.known("node-a", None)
    a.add({"content": "a memory whose vector gets mangled in transit", "namespace": "ops"}, principal=P, wait=True)
    page = a.replica.feed(peer="node-b", since=0, limit=500, principal=P)
    item = next(i for i in page.items if i.memory is not None)
    item.vector = item.vector[:40]  # a truncated vector: the receiver embeds the text itself
    counting = CountingEmbedder(b.embedder)
    b.embedder = counting
    b.replica.apply(parse_batch(page.model_dump(mode="json"), SyncPage), principal=P)
    assert counting.texts == 1
    (row,) = b.store.get_vectors([item.memory.id])
    assert row.vector.shape == (a.embedder.dim,)

    # bad input: a vector without its model, or on an item that is not a memory
    with pytest.raises(InvalidInputError, match="vector_model"):
        parse_batch({"node": "node-a", "items": [{"seq": 0, "memory": item.memory.model_dump(mode="json"), "vector": "AAAA"}]})
    link = {"source_id": "x", "target_id": "y", "relation": "related_to", "created_at": "2026-01-01T00:00:00Z"}
    with pytest.raises(InvalidInputError, match="only with a memory"):
        parse_batch({"node": "node-a", "items": [{"seq": 0, "link": link, "vector": "AAAA", "vector_model": "m"}]})
    assert SyncBatch and SyncItem  # the wire models are public
    for service in (a, b):
        service.store.close()
