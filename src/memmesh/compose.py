"""The composition root: the one place that turns Settings into a running Service.

Every face (Memory, the CLI, the HTTP server, the MCP server) calls :func:`build`; nothing
else reads Settings, so a new setting is wired in exactly one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from memmesh.audit.log import AuditConfig
from memmesh.audit.notes import audit_folder
from memmesh.clock import Clock, file_shifted_clock, shifted_clock
from memmesh.config import Settings
from memmesh.errors import ConfigError
from memmesh.kernel import embed_text
from memmesh.recall.background import BackgroundEmbedder
from memmesh.recall.embedders import Embedder, build_embedder
from memmesh.recall.engine import RecallEngine
from memmesh.recall.index import VectorIndex
from memmesh.recall.ranking import RankWeights
from memmesh.recall.sql_index import SqlBackedIndex
from memmesh.service import Policy, Service
from memmesh.store.base import Store
from memmesh.store.open import open_store

if TYPE_CHECKING:
    from memmesh.federation.outbox import Mesh


def build_policy(settings: Settings) -> Policy:
    """Service rules from the [limits] and [storage] sections."""
    return Policy(
        max_content_bytes=settings.limits.max_content_bytes,
        max_page_size=settings.limits.max_page_size,
        default_top_k=settings.recall.default_top_k,
        ttl_short_seconds=settings.storage.ttl_short_seconds,
        ttl_mid_seconds=settings.storage.ttl_mid_seconds,
        promote_after_accesses=settings.storage.promote_after_accesses,
        tombstone_retention_days=settings.storage.tombstone_retention_days,
        min_free_bytes=settings.storage.min_free_mb * 1024 * 1024,
        daily_write_quota=settings.limits.daily_write_quota,
        backup_dir=settings.data_dir / "backups",
        governance_mode=settings.governance.mode,
        governance_admins=tuple(settings.governance.admin_agents),
    )


def build_embedder_from(settings: Settings) -> Embedder | None:
    """The embedder the [embeddings] section asks for (None = keyword-only)."""
    emb = settings.embeddings
    return build_embedder(
        emb.provider,
        model=emb.model,
        url=emb.url,
        api_key=settings.embedding_api_key() if emb.provider == "openai" else None,
        quantize=emb.quantize,
        cache_dir=settings.cache_dir,
        timeout_s=emb.timeout_s,
        dim=emb.dim,
        batch_size=emb.batch_size,
    )


def build_store(settings: Settings, *, create: bool = True) -> Store:
    """The configured store; see :func:`open_store` for ``create``. Only the default
    database (no storage.url: a file in the data dir) may also create its folder."""
    return open_store(
        settings.storage_url,
        create=create,
        make_parents=settings.storage.url is None,
        busy_timeout_ms=settings.storage.busy_timeout_ms,
        synchronous=settings.storage.synchronous,
        pool_size=settings.storage.pool_size,
        ann_index=settings.storage.pg_ann_index,
        statement_timeout_ms=settings.storage.statement_timeout_ms,
        idle_in_transaction_timeout_ms=settings.storage.idle_in_transaction_timeout_ms,
    )


def build_index(settings: Settings, store: Store, model_id: str) -> VectorIndex:
    """In-process vector index; on PostgreSQL with pgvector's HNSW index, one that searches in
    the database once the store holds ``storage.pg_vector_search_min`` vectors."""
    if settings.storage.pg_ann_index and hasattr(store, "vector_search"):
        return SqlBackedIndex(
            store, model_id, None, ann_threshold=settings.recall.ann_threshold, sql_min=settings.storage.pg_vector_search_min
        )
    return VectorIndex(store, model_id, None, ann_threshold=settings.recall.ann_threshold, ann_path=ann_graph_path(store, model_id))


def ann_graph_path(store: Store, model_id: str) -> Path | None:
    """Where a SQLite file's HNSW graph is saved (``<db>.hnsw-<model>``); None in memory or on PostgreSQL."""
    path = getattr(store, "path", None)
    if not isinstance(path, str) or getattr(store, "in_memory", True) or not hasattr(store, "vector_snapshot"):
        return None
    tag = "".join(c if c.isalnum() or c in "-_." else "-" for c in model_id)
    return Path(f"{path}.hnsw-{tag}")


def node_clock(settings: Settings) -> Clock:
    """This node's wall clock: the system clock, unless a test-only chaos setting moves it
    (``clock_offset_file``, re-read as it changes, wins over a fixed ``clock_offset_ms``)."""
    federation = settings.federation
    if federation.clock_offset_file is not None:
        return file_shifted_clock(federation.clock_offset_file)
    return shifted_clock(federation.clock_offset_ms)


def build(settings: Settings, *, clock: Clock | None = None, store: Store | None = None, create: bool = True) -> Service:
    """A Service over the configured store, embedder, index and ranking (``create``: see
    :func:`memmesh.store.open.open_store`)."""
    if clock is not None and not callable(clock):
        raise ConfigError(
            f"clock must be a callable returning an aware UTC datetime, such as lambda: datetime.now(UTC) "
            f"(got {type(clock).__name__} {clock!r})"
        )
    settings.check_secret_files()
    store = store or build_store(settings, create=create)
    embedder = build_embedder_from(settings)
    index = build_index(settings, store, embedder.model_id) if embedder is not None else None
    rc = settings.recall
    weights = RankWeights(
        keyword=rc.keyword_weight,
        vector=rc.vector_weight,
        vector_floor=rc.vector_floor,
        context=rc.context_weight,
        context_decay=rc.context_decay,
        context_span=rc.context_span,
        context_window_s=rc.context_window_s,
        context_kinds=frozenset(rc.context_kinds),
        min_cosine=rc.min_cosine,
        recency_half_life_days=rc.recency_half_life_days,
        coverage=rc.coverage_weight,
        date=rc.date_weight,
    )
    engine = RecallEngine(store, embedder, index, weights, rc.candidates, collapse_duplicates=rc.collapse_duplicates)
    service = Service(
        store,
        policy=build_policy(settings),
        embedder=embedder,
        engine=engine,
        clock=clock or node_clock(settings),
        node_id=settings.storage.node_id,
        max_ahead_ms=settings.federation.max_ahead_ms,
    )
    if embedder is not None and settings.embeddings.background:
        background = BackgroundEmbedder(
            service.store,
            lambda: service.embedder,
            lambda m: embed_text(m.title, m.content),
            batch_size=settings.embeddings.batch_size,
            close_wait_s=settings.embeddings.close_wait_s,
        )
        service.background = engine.background = background
        engine.background_wait_s = settings.embeddings.recall_wait_s
        background.start()
    from memmesh.bus.core import BusPolicy
    from memmesh.sessions.core import SessionPolicy

    service.bus_policy = BusPolicy(**settings.bus.model_dump())
    service.session_policy = SessionPolicy(**settings.sessions.model_dump())
    from memmesh.subscriptions import SubscriptionPolicy

    service.subscription_policy = SubscriptionPolicy(**settings.subscriptions.model_dump())
    from memmesh.curator import CuratorPolicy

    service.curator_policy = CuratorPolicy(**settings.curator.model_dump())
    _wire_extraction(service, settings)
    service.audit.configure(build_audit_config(settings))
    return service


def _wire_extraction(service: Service, settings: Settings) -> None:
    """The [extraction] rules and, when [llm] names a server, the LLM client they may use."""
    from memmesh.extraction.core import ExtractionPolicy
    from memmesh.llm.client import LLMClient, LLMConfig

    service.extraction_policy = ExtractionPolicy(**settings.extraction.model_dump())
    llm = settings.llm
    if llm.base_url:
        service.llm = LLMClient(
            LLMConfig(
                base_url=llm.base_url,
                model=llm.model,
                api_key=settings.llm_api_key(),
                timeout_s=llm.timeout_s,
                retries=llm.retries,
                max_concurrency=llm.max_concurrency,
                max_backoff_s=llm.max_backoff_s,
            )
        )


def build_audit_config(settings: Settings) -> AuditConfig:
    """The [audit] section: checkpoints go to, and are looked for in, checkpoint_dir (default
    <data_dir>/audit, :func:`memmesh.audit.notes.audit_folder`), with or without a signing key."""
    audit = settings.audit
    folder = audit.checkpoint_dir or audit_folder(settings.data_dir)
    return AuditConfig(
        checkpoint_dir=folder,
        signing_key_file=audit.signing_key_file,
        verify_key_file=audit.public_key_path,
        checkpoint_interval_s=audit.checkpoint_interval_s,
        checkpoint_every=audit.checkpoint_every,
        retention_days=audit.retention_days,
    )


def build_mesh(service: Service, settings: Settings) -> Mesh | None:
    """The replication runtime for ``service`` when [federation] names peers (not started).

    Only long-running processes (``serve``, ``sync-daemon``) build one; the embedded API
    and one-shot CLI commands write locally and the server's pushers ship their changes.
    """
    from memmesh.federation.outbox import Mesh, MeshSettings
    from memmesh.federation.peers import parse_peer_list, read_peer_keys
    from memmesh.tls import check_peer_schemes, client_context

    fed = settings.federation
    peers = parse_peer_list(fed.peers)
    if not peers:
        if fed.quorum_writes > 1:
            raise ConfigError(f"federation.quorum_writes is {fed.quorum_writes} but no --peers are given")
        service.replica.record_mesh((), 0)  # peers it had before are not peers any more (cluster status)
        return None
    tls = settings.tls
    client_tls = client_context(tls.quorum_client_cert_file, tls.quorum_client_key_file, tls.quorum_client_ca_file)
    check_peer_schemes(peers, client_tls)
    mesh = Mesh(
        service.replica,
        MeshSettings(
            peers=tuple(peers),
            client_tls=client_tls,
            peer_keys=read_peer_keys(fed.peer_key_file, peers),
            quorum_writes=fed.quorum_writes,
            quorum_timeout_ms=fed.quorum_timeout_ms,
            catchup_interval_s=fed.catchup_interval_secs,
            batch_size=fed.batch_size,
            outbox_lag_s=fed.outbox_lag_secs,
        ),
    )
    service.mesh = mesh
    return mesh
