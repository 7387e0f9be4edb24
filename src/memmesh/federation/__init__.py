"""Federation: nodes that each keep their own store and replicate to each other (docs/federation.md).

* :mod:`.changes` — the wire format of the change feed (pure, validated with pydantic).
* :mod:`.quorum` — how many acknowledgements a write needs and what to answer (pure).
* :mod:`.replica` — the core: applying a peer's changes with :func:`memmesh.versions.merge`
  inside one transaction, and serving our change feed.
* :mod:`.peers` — the one HTTP client to peers (TLS options belong there).
* :mod:`.outbox` — pushers (one per peer, driven by the durable per-peer cursor over the
  change counter), catch-up pulls and quorum writes.
"""
