"""Settings: one typed object, merged once from defaults, a TOML file, env and flags.

Precedence (SPEC §5): CLI flag > ``MEMMESH_*`` env > config file section > default.
The file is ``--config``, else ``$MEMMESH_CONFIG``, else ``<config dir>/memmesh/config.toml``.
Env names are ``MEMMESH_<SECTION>_<KEY>`` (``MEMMESH_STORAGE_URL``), plus the shortcuts
``MEMMESH_DB`` (= storage.url) and ``MEMMESH_DATA_DIR``. Nothing else in memmesh reads
the environment: :func:`load_settings` is the only place, and ``compose.build`` the only
reader of the result.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memmesh.errors import ConfigError

SECRET_KEYS = {"api_key", "password", "secret", "token", "key", "client_secret", "hmac_secret"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StorageSettings(_Section):
    url: str | None = Field(None, description="sqlite:///path, sqlite:///:memory: or postgresql://…; default: <data_dir>/memmesh.db")
    busy_timeout_ms: int = Field(15_000, ge=0, description="how long a writer waits for another process's lock")
    synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL", description="SQLite durability: NORMAL survives process crashes, FULL also power loss"
    )
    pool_size: int = Field(10, ge=1, le=1000, description="PostgreSQL: most pooled connections per process")
    pg_ann_index: bool = Field(False, description="PostgreSQL: keep a pgvector HNSW index per vector dimension (SQL-side ANN)")
    node_id: str | None = Field(None, description="this node's id in version vectors; default: generated once per database")
    ttl_short_seconds: int = Field(6 * 3600, ge=1, description="default TTL of short-tier memories")
    ttl_mid_seconds: int = Field(7 * 86400, ge=1, description="default TTL of mid-tier memories")
    promote_after_accesses: int = Field(5, ge=1, description="a mid memory recalled this often becomes long")
    tombstone_retention_days: float = Field(30.0, ge=0, description="gc purges tombstones older than this")


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


class RecallSettings(_Section):
    default_top_k: int = Field(10, ge=1, description="hits returned when top_k is not given")
    ann_threshold: int = Field(250_000, ge=0, description="vectors above which the HNSW index replaces exact search")
    keyword_weight: float = Field(1.0, ge=0, description="weight of the keyword (BM25) half of the fusion")
    vector_weight: float = Field(1.0, ge=0, description="weight of the semantic half of the fusion")
    recency_half_life_days: float = Field(30.0, gt=0, description="age at which the recency boost halves")
    collapse_duplicates: bool = Field(False, description="drop near-duplicate hits from the answer")
    vector_floor: float = Field(0.1, ge=0, lt=1, description="cosine that counts as no semantic match at all")
    candidates: int = Field(20, ge=1, le=1000, description="memories taken from each half (BM25, vectors) before fusion")
    context_weight: float = Field(0.6, ge=0, description="share of the best neighbour's relevance a memory inherits (0 = off)")
    context_decay: float = Field(0.8, ge=0, le=1, description="discount per extra position between a memory and its neighbour")
    context_span: int = Field(2, ge=0, le=10, description="neighbours on each side, in write order within a namespace")
    context_window_s: float = Field(3600.0, ge=0, description="neighbours must have been written within this many seconds")


class LimitsSettings(_Section):
    max_content_bytes: int = Field(65_536, ge=1, description="largest content, in UTF-8 bytes")
    max_page_size: int = Field(1000, ge=1, description="largest top_k / list page")
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="largest HTTP request body")
    rate_limit_per_minute: int = Field(0, ge=0, description="requests per key per minute; 0 = off")
    daily_write_quota: int = Field(0, ge=0, description="writes per namespace per day; 0 = off")


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(9077, ge=0, le=65535, description="bind port")
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    log_json: bool = Field(False, description="structured JSON logs")


class AuthSettings(_Section):
    require_auth: bool = Field(False, description="require an API key even on loopback with no keys")
    insecure: bool = Field(False, description="allow a non-loopback bind without any API key")


class McpSettings(_Section):
    profile: str = Field("core", description="tool profile: core, graph, admin, power, full or a comma list of families")
    agent_id: str | None = Field(None, description="agent identity recorded on writes over stdio")


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


class Settings(BaseModel):
    """Everything memmesh can be configured with; see ``memmesh doctor`` for the resolved values."""

    model_config = ConfigDict(extra="forbid")

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
        emb = self.embeddings
        if emb.api_key_env:
            return os.environ.get(emb.api_key_env) or None
        if emb.api_key_file:
            try:
                return emb.api_key_file.read_text().strip() or None
            except OSError as exc:
                raise ConfigError(f"embeddings.api_key_file {emb.api_key_file}: {exc.strerror}") from exc
        return None


SECTIONS = tuple(
    name
    for name, field in Settings.model_fields.items()
    if isinstance(field.default_factory, type) and issubclass(field.default_factory, _Section)
)


def redact_url(url: str) -> str:
    """Hide the password of ``scheme://user:password@host/...`` URLs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("memmesh")) / "config.toml"


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge default < file < env < overrides into one validated :class:`Settings`.

    ``overrides`` is what CLI flags set, nested like the file (``{"storage": {"url": …}}``);
    ``None`` values in it are ignored so unset flags don't mask the env or the file.
    """
    env = os.environ if env is None else env
    path, explicit = _config_path(config_file, env)
    merged: dict[str, Any] = {}
    if path is not None and (explicit or path.exists()):
        _deep_merge(merged, _read_file(path))
        merged["config_file"] = str(path)
    _deep_merge(merged, _from_env(env))
    _deep_merge(merged, _drop_none(dict(overrides or {})))
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def _config_path(config_file: str | Path | None, env: Mapping[str, str]) -> tuple[Path | None, bool]:
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
                    raise ConfigError(
                        f"config file {path}: [{section}] {key} holds an inline secret; remove it and set "
                        f'{key}_env = "ENV_VAR_NAME" or {key}_file = "/path/to/file" instead'
                    )
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if env.get("MEMMESH_DB"):
        found.setdefault("storage", {})["url"] = _db_url(env["MEMMESH_DB"])
    if env.get("MEMMESH_DATA_DIR"):
        found["data_dir"] = env["MEMMESH_DATA_DIR"]
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
    return found


def _db_url(value: str) -> str:
    """``--db``/``MEMMESH_DB`` take a URL or a plain file path."""
    return value if "://" in value else f"sqlite:///{Path(value).expanduser().absolute()}"


def db_override(value: str | None) -> dict[str, Any]:
    """The overrides dict for a ``--db`` flag (empty when the flag is not given)."""
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


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f"config file {path}" if path is not None and path.exists() else "configuration"
    parts = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        dotted = ".".join(loc)
        if err["type"] == "extra_forbidden":
            if len(loc) == 1:
                parts.append(f"unknown section or key '{dotted}' (sections: {', '.join(SECTIONS)})")
            else:
                model = Settings.model_fields[loc[0]].default_factory
                known = ", ".join(model.model_fields)  # type: ignore[union-attr]
                parts.append(f"unknown key '{dotted}' (known keys in [{loc[0]}]: {known})")
        else:
            parts.append(f"'{dotted}': {err['msg']}")
    return f"{where}: " + "; ".join(parts)
