"""Settings: one typed object, merged once from defaults, a TOML file, env and flags.

Precedence (docs/configuration.md): CLI flag > ``MEMMESH_*`` env > config file section > default.
The file is ``--config``, else ``$MEMMESH_CONFIG``, else ``<config dir>/memmesh/config.toml``.
Env names are ``MEMMESH_<SECTION>_<KEY>`` (``MEMMESH_STORAGE_URL``), plus the shortcuts
``MEMMESH_DB`` (= storage.url) and ``MEMMESH_DATA_DIR``. Nothing else in memmesh reads
the environment: :func:`load_settings` is the only place, and ``compose.build`` the only
reader of the result.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from memmesh.errors import ConfigError
from memmesh.fileaccess import full_path, user_name
from memmesh.model import MAX_AGENT_ID_CHARS, NODE_ID_PATTERN, NODE_ID_RULE, Kind
from memmesh.recall.ranking import RankWeights
from memmesh.redact import redact_url

_RANK = RankWeights()  # the ranking's defaults live there, once

SECRET_KEYS = {"api_key", "password", "secret", "token", "key", "client_secret", "hmac_secret"}
SECRET_FILE_SUFFIXES = ("key_file", "keyfile", "password_file", "secret_file", "token_file")
"""A setting whose name ends like this names a file holding a secret (``embeddings.api_key_file``,
a TLS private key): it must be the running user's and unreadable by anyone else."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class StorageSettings(_Section):
    url: str | None = Field(None, description="sqlite:///path, sqlite:///:memory: or postgresql://…; default: <data_dir>/memmesh.db")
    busy_timeout_ms: int = Field(
        15_000, ge=0, description="SQLite: how long a writer waits for another process's lock before 'database is locked'"
    )
    synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL", description="SQLite durability: NORMAL survives process crashes, FULL also power loss"
    )
    pool_size: int = Field(10, ge=1, le=1000, description="PostgreSQL: most pooled connections per process")
    pg_ann_index: bool = Field(True, description="PostgreSQL: keep a pgvector HNSW index per vector dimension (SQL-side ANN)")
    pg_vector_search_min: int = Field(
        100_000,
        ge=0,
        description="PostgreSQL with pg_ann_index: vectors of one model from which recall searches in SQL, not in process (0 = never)",
    )
    statement_timeout_ms: int = Field(
        10_000, ge=0, description="PostgreSQL: longest any one statement may run (0 = no limit); past it the request fails with 503"
    )
    idle_in_transaction_timeout_ms: int = Field(
        3_000,
        ge=0,
        description="PostgreSQL: the server ends a transaction left idle this long (a frozen node), releasing its locks",
    )
    min_free_mb: int = Field(
        32,
        ge=0,
        description="SQLite: free MiB on the database's disk under which health says `writes` degraded, before writes fail (0 = no check)",
    )
    node_id: str | None = Field(None, description="this node's id in version vectors; default: generated once per database")
    ttl_short_seconds: int = Field(6 * 3600, ge=1, description="default TTL of short-tier memories")
    ttl_mid_seconds: int = Field(7 * 86400, ge=1, description="default TTL of mid-tier memories")
    promote_after_accesses: int = Field(5, ge=1, description="a mid memory recalled this often becomes long")
    tombstone_retention_days: float = Field(30.0, ge=0, description="gc purges tombstones older than this")

    @field_validator("node_id")
    @classmethod
    def _valid_node_id(cls, value: str | None) -> str | None:
        """Checked here, not only when the store adopts it, so a bad ``--node-id`` is a usage
        error naming the flag (exit 2) before any store is opened."""
        if value is not None and not re.match(NODE_ID_PATTERN, value):
            raise PydanticCustomError("node_id", "node id {value} is not valid: " + NODE_ID_RULE, {"value": repr(value)})
        return value

    @field_validator("url")
    @classmethod
    def _sqlite_file_in_full(cls, value: str | None) -> str | None:
        """A SQLite URL names its file as the store opens it: ``~`` expanded and a relative
        path made absolute (against the working directory), so ``init``, ``doctor`` and every
        message show the file really used, never ``sqlite:///~/x.db`` (nor ``…/cf/../cf/x.db``)."""
        rest = value[len("sqlite://") :] if value is not None and value.startswith("sqlite://") else None
        if rest is None or rest in ("/", "/:memory:") or not rest.startswith("/"):
            return value  # not SQLite, in memory, or malformed (the store says how to write it)
        return f"sqlite:///{full_path(rest[1:])}"


class EmbeddingSettings(_Section):
    provider: Literal["minilm", "openai", "none"] = Field(
        "minilm", description="minilm (offline, default), openai (any /v1/embeddings server) or none (keyword only)"
    )
    model: str | None = Field(None, description="model name for the openai provider")
    url: str | None = Field(None, description="base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:11434")
    api_key_env: str | None = Field(None, description="name of the env variable holding the API key")
    api_key_file: Path | None = Field(None, description="file holding the API key")
    quantize: bool = Field(False, description="int8 per-channel quantised MiniLM (faster, slightly less exact)")
    timeout_s: float = Field(30.0, gt=0, description="remote embedder timeout")
    dim: int | None = Field(None, ge=1, description="expected dimension for a remote embedder")
    batch_size: int = Field(64, ge=1, le=4096, description="texts per embedding batch")
    background: bool = Field(
        True, description="writes commit before their vector is computed; a background worker embeds them in micro-batches"
    )
    recall_wait_s: float = Field(
        10.0, ge=0, description="how long a recall waits for this process's queued embeddings before answering without them"
    )
    close_wait_s: float = Field(
        10.0,
        ge=0,
        description="how long close() and process exit go on embedding what this process queued; the rest stays pending "
        "for the next process that opens the store (or `memmesh reindex`)",
    )


class RecallSettings(_Section):
    default_top_k: int = Field(10, ge=1, description="hits returned when top_k is not given")
    ann_threshold: int = Field(250_000, ge=0, description="vectors above which the HNSW index replaces exact search")
    keyword_weight: float = Field(_RANK.keyword, ge=0, description="weight of the keyword (BM25) half of the fusion")
    vector_weight: float = Field(_RANK.vector, ge=0, description="weight of the semantic half of the fusion")
    recency_half_life_days: float = Field(_RANK.recency_half_life_days, gt=0, description="age at which the recency boost halves")
    collapse_duplicates: bool = Field(False, description="drop near-duplicate hits from the answer")
    vector_floor: float = Field(_RANK.vector_floor, ge=0, lt=1, description="cosine that counts as no semantic match at all")
    min_cosine: float = Field(
        _RANK.min_cosine, ge=0, le=1, description="cosine a hit needs to be returned when no query word matches it (relevance floor)"
    )
    candidates: int = Field(20, ge=1, le=1000, description="memories taken from each half (BM25, vectors) before fusion")
    context_weight: float = Field(_RANK.context, ge=0, description="share of the best neighbour's relevance a memory inherits (0 = off)")
    context_decay: float = Field(_RANK.context_decay, ge=0, le=1, description="discount per extra position to a neighbour")
    context_span: int = Field(_RANK.context_span, ge=0, le=10, description="neighbours on each side, in write order within a namespace")
    context_window_s: float = Field(_RANK.context_window_s, ge=0, description="neighbours must have been written within this many seconds")
    coverage_weight: float = Field(
        _RANK.coverage, ge=0, description="weight of the share of query words in a memory's write-order window (0 = off)"
    )
    date_weight: float = Field(
        _RANK.date, ge=0, description="boost of memories from the day/month/year a query names (valid_from, else created_at; 0 = off)"
    )
    context_kinds: list[Kind] = Field(
        default_factory=lambda: sorted(_RANK.context_kinds),
        description="kinds that form a sequence (conversation turns, episodes): only they get write-order context",
    )

    @field_validator("context_kinds", mode="before")
    @classmethod
    def _kinds_from_text(cls, value: Any) -> Any:
        """``MEMMESH_RECALL_CONTEXT_KINDS=message,episode`` (a comma list; empty = no context).
        The list's own text (``['episode', 'message']``, how ``serve`` hands settings to its
        workers) reads back the same."""
        if not isinstance(value, str):
            return value
        return [k.strip().strip("'\"") for k in value.strip().strip("[]").split(",") if k.strip().strip("'\"")]


class LimitsSettings(_Section):
    max_content_bytes: int = Field(65_536, ge=1, description="largest content, in UTF-8 bytes")
    max_page_size: int = Field(1000, ge=1, description="largest top_k / list page")
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="largest HTTP request body")
    rate_limit_per_minute: int = Field(0, ge=0, description="requests per key per minute; 0 = off")
    max_clock_skew_seconds: float = Field(
        300, ge=0, description="restore refuses records stamped more than this far ahead of now (they would win every merge)"
    )
    daily_write_quota: int = Field(0, ge=0, description="stored writes per top-level namespace per UTC day; 0 = off")


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(9077, ge=0, le=65535, description="bind port")
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    log_json: bool = Field(False, description="structured JSON logs")
    request_timeout_secs: float = Field(
        60.0, gt=0, le=3600, description="a client must send its whole request (headers and body) within this; else 408 and closed"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="extra Host names (no port) a loopback-bound server answers /api/v1 for; else only localhost, 127.0.0.1, [::1] (421)",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="extra Origin values (scheme://host[:port]) allowed to call /api/v1; any other foreign Origin gets 403",
    )

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _list_from_text(cls, value: Any) -> Any:
        """``MEMMESH_SERVER_ALLOWED_HOSTS=memory.lan,box`` (a comma list), or the list's own text."""
        if not isinstance(value, str):
            return value
        return [h.strip().strip("'\"") for h in value.strip().strip("[]").split(",") if h.strip().strip("'\"")]


class AuthSettings(_Section):
    require_auth: bool = Field(False, description="require an API key even on loopback with no keys")
    insecure: bool = Field(False, description="allow a non-loopback bind without any API key")


class McpSettings(_Section):
    profile: str = Field("core", description="tool profile: core, graph, admin, power, full or a comma list of families")
    agent_id: str | None = Field(None, max_length=MAX_AGENT_ID_CHARS, description="agent identity recorded on writes over stdio")


class FederationSettings(_Section):
    peers: str = Field("", description="comma-separated base URLs of peer nodes, e.g. http://10.0.0.2:9077,http://10.0.0.3:9077")
    peer_key_file: Path | None = Field(
        None, description="file with the peer API keys this node sends: one line per peer 'URL KEY', or one 'KEY' for all"
    )
    quorum_writes: int = Field(0, ge=0, description="nodes (this one included) that must hold a write before 201; 0 = local only")
    quorum_timeout_ms: int = Field(2000, ge=1, description="how long a quorum write waits for peers before 503 quorum_not_met")
    catchup_interval_secs: float = Field(30.0, gt=0, description="how often to pull peers' changes (also done on start)")
    max_ahead_ms: int = Field(500, ge=0, description="a peer timestamp further ahead of our clock is refused and counted")
    batch_size: int = Field(200, ge=1, le=2000, description="changes per push or pull page")
    outbox_lag_secs: float = Field(
        60.0, gt=0, description="a peer this node pushes to that is this far behind on its changes makes /readyz degraded"
    )
    clock_offset_ms: int = Field(
        0, description="test only (memmesh chaos clock_skew): shift this node's wall clock by this many ms; 0 in production"
    )
    clock_offset_file: Path | None = Field(
        None,
        description="test only (memmesh chaos clock_skew): shift this node's wall clock by the ms written in this file, "
        "re-read when it changes (a clock that jumps while the node runs); unset in production",
    )


class TLSSettings(_Section):
    cert_file: Path | None = Field(None, description="this server's TLS certificate (PEM); set with key_file to serve https")
    key_file: Path | None = Field(None, description="its private key (PEM, mode 0600 or 0400)")
    client_ca_file: Path | None = Field(
        None, description="CA that client certificates must chain to (default with an allowlist: quorum_client_ca_file)"
    )
    require_client_cert: bool = Field(False, description="refuse every connection without a client certificate from client_ca_file")
    mtls_allowlist: Path | None = Field(
        None, description="file of SHA-256 certificate fingerprints allowed on the sync routes; any other peer is refused"
    )
    quorum_client_cert_file: Path | None = Field(None, description="client certificate this node presents to its peers")
    quorum_client_key_file: Path | None = Field(None, description="its private key (mode 0600 or 0400)")
    quorum_client_ca_file: Path | None = Field(None, description="CA the peers' server certificates must chain to")


class BusSettings(_Section):
    max_message_bytes: int = Field(65_536, ge=1, description="largest bus message body, in UTF-8 bytes")
    conversation_timeout_s: float = Field(10_800.0, gt=0, description="a conversation idle this long is archived (default 3 h)")
    lease_s: float = Field(30.0, gt=0, description="how long a claimed task stays with its worker without a heartbeat")
    max_deliveries: int = Field(5, ge=1, description="deliveries of a task before it goes to the dead-letter list")
    max_wait_s: float = Field(60.0, ge=0, description="longest long-poll wait a caller may ask for")
    max_long_polls: int = Field(
        16, ge=1, le=10_000, description="long-polls (unread/claim with a wait) one process lets wait at once; past it a poll gets 429"
    )
    max_long_polls_per_key: int = Field(
        4,
        ge=1,
        le=10_000,
        description=(
            "of those, long-polls one API key may hold at once; past it its poll gets 429 "
            "(callers without a key are held only to max_long_polls)"
        ),
    )
    workers_status_file: Path | None = Field(
        None, description="status file of `memmesh workers run` (<workers.toml>.status.json) to report in /metrics"
    )

    @model_validator(mode="after")
    def _per_key_within_total(self) -> BusSettings:
        """One key's share is at most the whole: set explicitly above it, it is a mistake; left
        at its default under a smaller ``max_long_polls``, it follows that bound down."""
        if self.max_long_polls_per_key > self.max_long_polls:
            if "max_long_polls_per_key" in self.model_fields_set:
                raise ValueError(
                    f"max_long_polls_per_key ({self.max_long_polls_per_key}) must not exceed max_long_polls ({self.max_long_polls}): "
                    "one key's share of the long-poll slots cannot be more than all of them"
                )
            object.__setattr__(self, "max_long_polls_per_key", self.max_long_polls)
        return self


class SessionSettings(_Section):
    namespace: str = Field("sessions", description="namespace root session turns are stored under (<root>/<session_id>)")
    recent_share: float = Field(0.5, gt=0, lt=1, description="share of a rehydration budget kept for the latest turns")
    abstractive: bool = Field(
        True, description="with [llm] set, rehydration's summary of older turns is written by the LLM (extractive on any failure)"
    )


class AuditSettings(_Section):
    checkpoint_dir: Path | None = Field(
        None, description="folder the signer writes checkpoints to and verify reads them from; default: <data_dir>/audit"
    )
    signing_key_file: Path | None = Field(
        None, description="Ed25519 key signing the checkpoints (mode 0600; create with `memmesh audit init-key`); unset = no checkpoints"
    )
    public_key_path: Path | None = Field(
        None, description="verifier key (the .pub from init-key) to check checkpoints where the signing key is absent"
    )
    checkpoint_interval_s: float = Field(1.0, gt=0, description="serve signs a checkpoint this often while the log grows")
    checkpoint_every: int = Field(1000, ge=1, description="... or as soon as this many entries were appended, whichever first")
    retention_days: float = Field(0.0, ge=0, description="serve prunes entries older than this, below a signed checkpoint (0 = keep all)")


class GovernanceSettings(_Section):
    mode: Literal["enforce", "advisory", "off"] = Field(
        "enforce",
        description="namespace standards' governance: enforce (deny refuses, approve queues), advisory (act, log and record "
        "the would-be refusal), off (no checks)",
    )
    admin_agents: list[str] = Field(
        default_factory=list,
        description="agent ids whose admin keys may set standards and approve or reject pending actions (empty: any admin "
        "of the namespace); comma list in the environment",
    )

    @field_validator("admin_agents", mode="before")
    @classmethod
    def _agents_from_text(cls, value: Any) -> Any:
        """``MEMMESH_GOVERNANCE_ADMIN_AGENTS=alice,bob`` (a comma list), or the list's own text."""
        if not isinstance(value, str):
            return value
        return [a.strip().strip("'\"") for a in value.strip().strip("[]").split(",") if a.strip().strip("'\"")]


class SubscriptionSettings(_Section):
    allow_loopback_webhooks: bool = Field(
        False,
        description="let webhooks target loopback, private and link-local addresses (off: such targets are refused, "
        "the SSRF guard; cloud metadata addresses are refused always)",
    )
    max_attempts: int = Field(8, ge=1, le=100, description="tries of a webhook delivery before it is dead-lettered")
    retry_base_s: float = Field(2.0, gt=0, description="wait after the first failed try; doubles after each further one")
    retry_max_s: float = Field(600.0, gt=0, description="longest wait between tries")
    timeout_s: float = Field(10.0, gt=0, le=300, description="how long one webhook call may take")
    poll_interval_s: float = Field(1.0, gt=0, description="how often serve looks for new changes and due deliveries")
    max_per_owner: int = Field(100, ge=1, description="subscriptions one keyed agent may hold (the local user is not limited)")
    max_notify_bytes: int = Field(65_536, ge=1, description="largest memory_notify body, in UTF-8 bytes")


class GcSettings(_Section):
    interval_secs: float = Field(
        3600.0,
        ge=0,
        description="serve runs gc (TTL expiry, retention_days, old tombstones) this often; servers on one store take turns (0 = never)",
    )


class CuratorSettings(_Section):
    interval_secs: float = Field(0.0, ge=0, description="serve runs the curator this often (0 = never; `memmesh curator run` any time)")
    max_ops: int = Field(1000, ge=1, description="most writes one run makes; the rest wait for the next run (operations_skipped_cap)")
    lease_secs: float = Field(600.0, gt=0, description="a run's lease on the store, renewed per batch; a crashed run frees it after this")
    duplicate_cosine: float = Field(
        0.9, gt=0, le=1, description="embedding cosine at which two memories on one subject are near-duplicates"
    )
    duplicate_overlap: float = Field(0.5, ge=0, le=1, description="... if their subject words also overlap this much (Jaccard)")
    duplicate_jaccard: float = Field(0.8, gt=0, le=1, description="subject-word overlap that makes near-duplicates without vectors")
    candidate_cosine: float = Field(0.7, gt=0, le=1, description="cosine from which two memories are compared at all")
    contradiction_overlap: float = Field(
        0.6, gt=0, le=1, description="subject-word overlap for 'same subject' (then a negation or other numbers contradict)"
    )
    auto_tag: bool = Field(True, description="tag untagged memories with their keywords")
    max_auto_tags: int = Field(3, ge=1, le=32, description="tags the curator gives one untagged memory")
    forget_expired: bool = Field(True, description="archive memories whose TTL ran out (as gc does)")
    forget_max_priority: int = Field(
        0, ge=0, le=10, description="forget never-recalled mid/short memories of at most this priority (0 = never)"
    )
    forget_idle_days: float = Field(90.0, ge=0, description="... once untouched this many days")
    boost_accesses: int = Field(10, ge=0, description="one priority step up per this many recalls (0 = never)")
    decay_idle_days: float = Field(0.0, ge=0, description="one priority step down for a memory never recalled this many days (0 = never)")


class LlmSettings(_Section):
    base_url: str | None = Field(
        None, description="OpenAI-compatible API root, e.g. http://127.0.0.1:11434/v1 (Ollama) or https://api.openai.com/v1; unset = no LLM"
    )
    model: str = Field("llama3.1:8b", description="model name the server runs")
    api_key_env: str | None = Field(None, description="name of the env variable holding the API key")
    api_key_file: Path | None = Field(None, description="file holding the API key (mode 0600)")
    timeout_s: float = Field(30.0, gt=0, description="seconds one request may take")
    retries: int = Field(2, ge=0, le=10, description="retries after a timeout, 429 or 5xx (exponential backoff, Retry-After obeyed)")
    max_concurrency: int = Field(2, ge=1, le=64, description="requests in flight at once per process")
    max_backoff_s: float = Field(30.0, gt=0, description="longest wait between retries (caps Retry-After)")


class ExtractionSettings(_Section):
    mode: Literal["auto", "offline", "llm"] = Field(
        "auto", description="fact extraction from messages: auto (the LLM when [llm] is set, else offline), offline, llm"
    )
    repairs: int = Field(1, ge=0, le=5, description="repair prompts after an LLM reply that fails the schema, before the offline fallback")
    max_facts_per_turn: int = Field(8, ge=1, le=64, description="facts kept from one turn at most")
    batch_turns: int = Field(8, ge=1, le=64, description="turns sent to the LLM in one request")
    workers: int = Field(2, ge=1, le=32, description="background extraction jobs run at once by serve (HTTP and MCP)")
    job_stale_s: float = Field(
        120.0, ge=1, description="a queued/running job whose process sent no heartbeat this long (it crashed) is marked failed"
    )


class Settings(BaseModel):
    """Everything memmesh can be configured with; see ``memmesh doctor`` for the resolved values."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("memmesh")))
    config_file: Path | None = None
    storage: StorageSettings = Field(default_factory=StorageSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    recall: RecallSettings = Field(default_factory=RecallSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    mcp: McpSettings = Field(default_factory=McpSettings)
    federation: FederationSettings = Field(default_factory=FederationSettings)
    tls: TLSSettings = Field(default_factory=TLSSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    governance: GovernanceSettings = Field(default_factory=GovernanceSettings)
    subscriptions: SubscriptionSettings = Field(default_factory=SubscriptionSettings)
    curator: CuratorSettings = Field(default_factory=CuratorSettings)
    gc: GcSettings = Field(default_factory=GcSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)

    @property
    def storage_url(self) -> str:
        """The store URL, defaulting to a SQLite file in the data dir."""
        return self.storage.url or f"sqlite:///{self.data_dir / 'memmesh.db'}"

    @property
    def display_url(self) -> str:
        """The store URL with any password replaced by ``***``, safe to print and log."""
        return redact_url(self.storage_url)

    @property
    def cache_dir(self) -> Path:
        """Where derived files (built ONNX graphs) are kept."""
        return self.data_dir / "cache"

    def embedding_api_key(self) -> str | None:
        """Read the remote embedder's key from the env variable or file the config names."""
        return self._api_key("embeddings")

    def llm_api_key(self) -> str | None:
        """Read the LLM server's key from the env variable or file ``[llm]`` names."""
        return self._api_key("llm")

    def _api_key(self, section: str) -> str | None:
        """A section's key: its ``api_key_env`` variable first, else its ``api_key_file`` (checked
        like every secret file; one that cannot be read is a ConfigError naming the setting)."""
        values = getattr(self, section)
        if values.api_key_env:
            return os.environ.get(values.api_key_env) or None
        path: Path | None = values.api_key_file
        if path:
            check_secret_file(f"{section}.api_key_file", path)
            try:
                return path.read_text().strip() or None
            except OSError as exc:
                raise ConfigError(f"{section}.api_key_file {path}: {exc.strerror}") from exc
        return None

    def secret_files(self) -> list[tuple[str, Path]]:
        """Every configured secret file, as ``(section.key, path)``."""
        found = []
        for section in SECTIONS:
            values = getattr(self, section)
            for name in type(values).model_fields:
                value = getattr(values, name)
                if value is not None and name.endswith(SECRET_FILE_SUFFIXES):
                    found.append((f"{section}.{name}", Path(value)))
        return found

    def check_secret_files(self: Settings) -> None:
        """Refuse to start when a secret file is another user's or readable by group/others."""
        for setting, path in self.secret_files():
            check_secret_file(setting, path)


SECTIONS = tuple(
    name
    for name, field in Settings.model_fields.items()
    if isinstance(field.default_factory, type) and issubclass(field.default_factory, _Section)
)


def check_secret_file(setting: str, path: Path) -> None:
    """A secret file must exist, be a regular file, belong to the user memmesh runs as and
    be unreadable by group and others (0600 or 0400); otherwise the error says the exact
    command to run. Why: a key other local users can read is a key they hold too.
    """
    quoted = shlex.quote(str(path))
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{setting} {path}: no such file", field=setting) from None
    except OSError as exc:
        raise ConfigError(f"{setting} {path} cannot be checked: {exc.strerror}", field=setting) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{setting} {path} is not a regular file", field=setting)
    if os.name != "posix":
        return
    if info.st_uid != os.geteuid():
        user = user_name(os.geteuid())
        raise ConfigError(
            f"{setting} {path} belongs to uid {info.st_uid}, not to the user memmesh runs as ({user}); "
            f"refusing to start: run `chown {shlex.quote(user)} {quoted} && chmod 600 {quoted}`",
            field=setting,
        )
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{setting} {path} is accessible to group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"refusing to start: run `chmod 600 {quoted}`",
            field=setting,
        )


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("memmesh")) / "config.toml"


FLAGS = "the command line"
"""Where a value passed to :func:`load_settings` as an override came from, in messages."""


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    flag_names: Mapping[str, str] | None = None,
) -> Settings:
    """Merge default < file < env < overrides into one validated :class:`Settings`.

    ``overrides`` is what CLI flags set, nested like the file (``{"storage": {"url": …}}``);
    ``None`` values in it are ignored so unset flags don't mask the env or the file.
    ``flag_names`` names the flag that set a dotted key (``{"server.port": "--port"}``), so a bad
    value is reported against ``--port`` rather than ``server.port``.
    """
    env = os.environ if env is None else env
    path, explicit = _config_path(config_file, env)
    merged: dict[str, Any] = {}
    if path is not None and (explicit or path.exists()):
        _deep_merge(merged, _read_file(path))
        merged["config_file"] = str(path)
    origins: dict[str, str] = {}
    _deep_merge(merged, _from_env(env, origins))
    flags = _drop_none(dict(overrides or {}))
    _deep_merge(merged, flags)
    flagged = _dotted_keys(flags)
    origins.update({key: (flag_names or {}).get(key, FLAGS) for key in flagged})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        # only bad flags make a malformed command (exit 2); a bad file or variable is an error (1)
        usage = all(".".join(str(p) for p in err["loc"][:2]) in flagged for err in exc.errors(include_url=False))
        raise ConfigError(_describe(exc, path, origins), usage=usage) from None


def _config_path(config_file: str | Path | None, env: Mapping[str, str]) -> tuple[Path | None, bool]:
    if config_file is not None and not isinstance(config_file, str | os.PathLike):
        raise ConfigError(f"config must be a config file's path or a Settings object (got {type(config_file).__name__} {config_file!r})")
    if config_file:
        return Path(config_file).expanduser(), True
    if env.get("MEMMESH_CONFIG"):
        return Path(env["MEMMESH_CONFIG"]).expanduser(), True
    return default_config_path(), False


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for section, values in data.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if key in SECRET_KEYS and value:
                    raise ConfigError(f"config file {path}: [{section}] {key} holds an inline secret; {_secret_advice(section, key)}")
    return data


def _secret_advice(section: str, key: str) -> str:
    """What to write instead of an inline secret: only key names that really exist, so the
    advice cannot lead to an "unknown key" error next."""
    model = Settings.model_fields.get(section)
    fields = getattr(model.annotation, "model_fields", {}) if model else {}
    if f"{key}_env" in fields and f"{key}_file" in fields:
        return f'remove it and set {key}_env = "ENV_VAR_NAME" or {key}_file = "/path/to/file" instead'
    holders = [
        f"[{name}] {field}"
        for name, info in Settings.model_fields.items()
        for field in getattr(info.annotation, "model_fields", {})
        if field.endswith(("_env", "_file"))
    ]
    return f"remove it: [{section}] takes no secret (secrets are read only through {', '.join(holders)})"


def _from_env(env: Mapping[str, str], origins: dict[str, str] | None = None) -> dict[str, Any]:
    """Settings from ``MEMMESH_*`` variables; ``origins`` learns which variable set each
    dotted key, so a bad value is blamed on the variable rather than the config file."""
    found: dict[str, Any] = {}
    origins = {} if origins is None else origins
    if env.get("MEMMESH_DB"):
        found.setdefault("storage", {})["url"] = _db_url(env["MEMMESH_DB"])
        origins["storage.url"] = "environment variable MEMMESH_DB"
    if env.get("MEMMESH_DATA_DIR"):
        found["data_dir"] = env["MEMMESH_DATA_DIR"]
        origins["data_dir"] = "environment variable MEMMESH_DATA_DIR"
    for name, value in env.items():
        if not name.startswith("MEMMESH_"):
            continue
        rest = name[len("MEMMESH_") :].lower()
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                model = Settings.model_fields[section].default_factory
                if key in model.model_fields:  # type: ignore[union-attr]
                    found.setdefault(section, {})[key] = value
                    origins[f"{section}.{key}"] = f"environment variable {name}"
    return found


def _dotted_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys += _dotted_keys(value, dotted + ".") if isinstance(value, Mapping) else [dotted]
    return keys


_LIBPQ_KEYS = frozenset({"host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "connect_timeout", "application_name"})


def _db_url(value: str) -> str:
    """``--db``/``MEMMESH_DB`` take a URL or a plain file path. A libpq keyword string
    (``host=… dbname=…``, what ``psql`` and ``pg_test_server.py`` print) is neither: it is
    refused with the URL it spells, instead of being taken for a SQLite file name."""
    if "://" in value:
        return value
    pairs = [word.partition("=") for word in value.split()]
    if pairs and all(sep and key in _LIBPQ_KEYS for key, sep, _ in pairs) and {"host", "dbname"} & {p[0] for p in pairs}:
        shown = " ".join(f"{key}=…" if key == "password" else f"{key}={val}" for key, _, val in pairs)
        secret = "; its password goes in the URL (USER:PASSWORD@) or in ~/.pgpass" if "password" in value else ""
        raise ConfigError(
            f"{shown!r} is a PostgreSQL keyword connection string, not a store URL: write it as "
            f"{_postgres_url({key: val for key, _, val in pairs})}{secret}"
        )
    return f"sqlite:///{full_path(value)}"


def _postgres_url(parts: dict[str, str]) -> str:
    """The ``postgresql://`` URL for libpq keywords (a socket folder as ``host=`` in the query;
    the password left out: pass it in the URL yourself, or in ``~/.pgpass``)."""
    host, port, socket = parts.pop("host", ""), parts.pop("port", ""), None
    if host.startswith("/"):
        host, socket = "", host
    user, dbname = parts.pop("user", ""), parts.pop("dbname", "")
    parts.pop("password", None)
    query = [f"host={socket}"] if socket else []
    query += [f"port={port}"] if socket and port else []
    query += [f"{key}={val}" for key, val in parts.items()]
    netloc = f"{user + '@' if user else ''}{host}{':' + port if port and not socket else ''}"
    return f"postgresql://{netloc}/{dbname}" + ("?" + "&".join(query) if query else "")


def db_override(value: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The overrides dict for a ``--db`` flag (empty when the flag is not given); a path object
    is taken as its text, anything else but a string is refused (``Memory(5)``)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if value is not None and not isinstance(value, str):
        raise ConfigError(
            f"the store must be a URL or a file path as a string, such as 'sqlite:///memory.db' or 'memory.db' "
            f"(got {type(value).__name__} {value!r})"
        )
    return {"storage": {"url": _db_url(value)}} if value else {}


def _deep_merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            inner = _drop_none(dict(value))
            if inner:
                out[key] = inner
        elif value is not None:
            out[key] = value
    return out


def _describe(exc: ValidationError, path: Path | None, origins: Mapping[str, str] | None = None) -> str:
    """One message naming where each bad value came from: the flag, the ``MEMMESH_*``
    variable or the config file (the highest-precedence source that set it)."""
    file_where = f"config file {path}" if path is not None and path.exists() else "configuration"
    origins = origins or {}
    by_where: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        dotted = ".".join(loc)
        parts = by_where.setdefault(origins.get(".".join(loc[:2]), file_where), [])
        if err["type"] == "extra_forbidden":
            if len(loc) == 1:
                parts.append(f"unknown section or key '{dotted}' (sections: {', '.join(SECTIONS)})")
            else:
                model = Settings.model_fields[loc[0]].default_factory
                known = ", ".join(model.model_fields)  # type: ignore[union-attr]
                parts.append(f"unknown key '{dotted}' (known keys in [{loc[0]}]: {known})")
        elif origins.get(dotted, "").startswith("--"):  # the flag is named already: "--port: Input should be …"
            parts.append(err["msg"])
        else:
            parts.append(f"'{dotted}': {err['msg']}")
    return "; ".join(f"{where}: " + "; ".join(parts) for where, parts in by_where.items())


OTHER_ENV = frozenset(
    {"CONFIG", "DB", "DATA_DIR", "BUS_TOKEN", "SHIP_GATE_PG_URL", "WORKER_NAME", "WORKER_HEARTBEAT_FILE", "FEDERATION_CLOCK_OFFSET_FILE"}
)
"""``MEMMESH_*`` variables read outside the settings (CLI options, workers, chaos faults)."""


def unknown_env(env: Mapping[str, str]) -> list[str]:
    """``MEMMESH_*`` variables memmesh never reads, each with the nearest real name when one is
    close: a typo (``MEMMESH_RECALL_DEFAULT_TOPK``) is otherwise silently ignored, and the
    operator believes a setting is in force that is not (``memmesh doctor`` warns)."""
    import difflib

    known = set(OTHER_ENV)
    for section in SECTIONS:
        model = Settings.model_fields[section].default_factory
        known.update(f"{section}_{key}".upper() for key in model.model_fields)  # type: ignore[union-attr]
    found = []
    for name in sorted(env):
        rest = name[len("MEMMESH_") :] if name.startswith("MEMMESH_") else None
        if rest is None or rest in known:
            continue
        near = difflib.get_close_matches(rest, known, n=1, cutoff=0.8)
        found.append(f"{name} (did you mean MEMMESH_{near[0]}?)" if near else name)
    return found
