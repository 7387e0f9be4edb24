"""``memmesh serve``: the HTTP API (docs/http.md) on 127.0.0.1:9077 by default."""

from __future__ import annotations

import typer

from memmesh.config import db_override
from memmesh.interfaces.cli.context import (
    QUORUM_CLIENT_CA_OPTION,
    QUORUM_CLIENT_CERT_OPTION,
    QUORUM_CLIENT_KEY_OPTION,
    QUORUM_CLIENT_SETTINGS,
    app,
    state,
)

SERVE_SETTINGS = {
    "host": "server.host",
    "port": "server.port",
    "workers": "server.workers",
    "log_json": "server.log_json",
    "require_auth": "auth.require_auth",
    "insecure": "auth.insecure",
    "node_id": "storage.node_id",
    "peers": "federation.peers",
    "quorum_writes": "federation.quorum_writes",
    "quorum_timeout_ms": "federation.quorum_timeout_ms",
    "catchup_interval_secs": "federation.catchup_interval_secs",
    "peer_key_file": "federation.peer_key_file",
    "tls_cert": "tls.cert_file",
    "tls_key": "tls.key_file",
    "tls_client_ca": "tls.client_ca_file",
    "tls_require_client_cert": "tls.require_client_cert",
    "mtls_allowlist": "tls.mtls_allowlist",
    **QUORUM_CLIENT_SETTINGS,
}
"""The setting each ``serve`` option sets (parameter name → dotted key); a bad value is
reported against the option's flag."""


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: str = typer.Option(None, "--host", help="Bind address (default 127.0.0.1; others need API keys or --insecure)."),
    port: int = typer.Option(None, "--port", help="Port (default 9077)."),
    db: str = typer.Option(None, "--db", help="Database URL or SQLite file path (overrides the global --db)."),
    config: str = typer.Option(None, "--config", help="Config file (overrides the global --config)."),
    workers: int = typer.Option(None, "--workers", min=1, help="Worker processes (default 1)."),
    require_auth: bool = typer.Option(None, "--require-auth", help="Require an API key even on loopback with no keys."),
    insecure: bool = typer.Option(None, "--insecure", help="Allow a non-loopback bind without any API key."),
    log_json: bool = typer.Option(None, "--log-json", help="Structured JSON logs on stderr."),
    node_id: str = typer.Option(None, "--node-id", help="This node's id in the mesh (kept in the store; default: generated once)."),
    peers: str = typer.Option(None, "--peers", help="Comma-separated base URLs of peer nodes to replicate with."),
    quorum_writes: int = typer.Option(
        None, "--quorum-writes", min=0, help="Nodes (this one included) that must hold a write; 0 = local only."
    ),
    quorum_timeout_ms: int = typer.Option(None, "--quorum-timeout-ms", min=1, help="Wait this long for the quorum, then 503."),
    catchup_interval_secs: float = typer.Option(None, "--catchup-interval-secs", help="Pull peers' changes this often (and on start)."),
    peer_key_file: str = typer.Option(None, "--peer-key-file", help="Peer API keys to send: lines 'URL KEY', or one 'KEY' for all."),
    tls_cert: str = typer.Option(None, "--tls-cert", help="Serve https with this certificate (PEM); needs --tls-key."),
    tls_key: str = typer.Option(None, "--tls-key", help="The certificate's private key (PEM, mode 0600 or 0400)."),
    tls_client_ca: str = typer.Option(None, "--tls-client-ca", help="CA that client certificates must chain to."),
    tls_require_client_cert: bool = typer.Option(
        None, "--tls-require-client-cert", help="Refuse every connection without a client certificate from --tls-client-ca."
    ),
    mtls_allowlist: str = typer.Option(
        None, "--mtls-allowlist", help="File of SHA-256 certificate fingerprints allowed on the sync routes (others: 403)."
    ),
    quorum_client_cert: str = QUORUM_CLIENT_CERT_OPTION,
    quorum_client_key: str = QUORUM_CLIENT_KEY_OPTION,
    quorum_client_ca: str = QUORUM_CLIENT_CA_OPTION,
) -> None:
    """Serve memories over HTTP until stopped (SIGTERM/Ctrl-C finish in-flight requests first)."""
    from memmesh.interfaces.http.server import json_logs_from_the_start
    from memmesh.interfaces.http.server import serve as run

    if log_json:
        json_logs_from_the_start()
    if config is not None:
        state.config = config
    state.extra_overrides.update(db_override(db))  # merged with --node-id below, and into the global --db, by State
    state.set_from_options(ctx, SERVE_SETTINGS)
    run(state.settings())
