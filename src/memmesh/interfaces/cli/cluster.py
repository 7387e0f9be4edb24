"""``memmesh cluster status`` and ``memmesh sync-daemon``: the mesh from the terminal."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from memmesh.interfaces.cli.context import (
    JSON_OPTION,
    QUORUM_CLIENT_CA_OPTION,
    QUORUM_CLIENT_CERT_OPTION,
    QUORUM_CLIENT_KEY_OPTION,
    QUORUM_CLIENT_SETTINGS,
    app,
    console,
    print_json,
    state,
)
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.wording import agree, count

if TYPE_CHECKING:
    from memmesh.federation.digest import Comparison
    from memmesh.federation.peers import PeerClient

cluster_app = typer.Typer(help="This node's place in the mesh: peers, lag, outbox, clocks.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("status")
def status(as_json: bool = JSON_OPTION) -> None:
    """Peers (id, URL, up, down or removed), cursors, outbox depth, lag, last contact and
    clocks, from the store (peers and quorum as the last serve or sync-daemon on it set them)."""
    report = state.service().replica.status(principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(report)
        return
    console.print(
        f"node {report.node_id}  hlc {report.hlc}  changes {report.change_counter}  "
        f"clock refusals {report.clock_refused}  purged up to {report.purged_seq}  quorum writes {report.quorum_writes}",
        markup=False,
    )
    table = Table("peer", "url", "state", "sent", "received", "outbox", "lag", "last contact", "error")
    for peer in report.peers:
        table.add_row(
            peer.node_id or "?",
            peer.url or "",
            peer.state,
            str(peer.sent_seq),
            str(peer.recv_seq),
            str(peer.outbox_changes),
            f"{peer.lag_seconds:.0f} s" if peer.lag_seconds is not None else "",
            peer.last_contact.isoformat(timespec="seconds") if peer.last_contact else "never",
            peer.last_error or "",
        )
    console.print(table)


def _peer_clients(
    ctx: typer.Context, peers: str | None, peer_key_file: str | None, timeout_s: float = 120.0, *, configured_keys: bool = True
) -> list[PeerClient]:
    """Clients for ``--peers`` (default: [federation] peers), with keys and client TLS as
    ``serve`` uses them (its ``--quorum-client-*`` flags, the [tls] settings or their env).
    ``configured_keys``: without ``--peer-key-file``, read [federation] peer_key_file."""
    from memmesh.federation.peers import PeerClient, parse_peer_list, read_peer_keys
    from memmesh.tls import client_context

    state.set_from_options(ctx, QUORUM_CLIENT_SETTINGS)
    settings = state.settings()
    urls = parse_peer_list(peers if peers is not None else settings.federation.peers)
    key_file = Path(peer_key_file) if peer_key_file else settings.federation.peer_key_file if configured_keys else None
    keys = read_peer_keys(key_file, urls)
    tls = settings.tls
    context = client_context(tls.quorum_client_cert_file, tls.quorum_client_key_file, tls.quorum_client_ca_file)
    return [PeerClient(url, keys[url], timeout_s, context) for url in urls]


PEERS_OPTION = typer.Option(None, "--peers", help="Comma-separated base URLs of peers to compare with (default: \\[federation] peers).")
PEER_KEY_OPTION = typer.Option(None, "--peer-key-file", help="Peer API keys to send: lines 'URL KEY', or one 'KEY' for all.")


@cluster_app.command("verify")
def verify(
    ctx: typer.Context,
    peers: str = PEERS_OPTION,
    peer_key_file: str = PEER_KEY_OPTION,
    quorum_client_cert: str = QUORUM_CLIENT_CERT_OPTION,
    quorum_client_key: str = QUORUM_CLIENT_KEY_OPTION,
    quorum_client_ca: str = QUORUM_CLIENT_CA_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Compare this node's per-namespace content digests with every peer's, side by side.

    Equal digests everywhere mean the nodes hold the same replicated state; memmesh cluster
    repair fixes a difference. Exit code 1 when a namespace differs or a peer cannot be read
    (then "consistent" is false: what was not compared is not known to agree)."""
    from memmesh.federation.antientropy import verify as run_verify

    clients = _peer_clients(ctx, peers, peer_key_file)  # first: its flags are settings, read once
    try:
        verdict = run_verify(state.service().replica.digests(principal=LOCAL_PRINCIPAL), clients)
    finally:
        for client in clients:
            client.close()
    if as_json:
        print_json(verdict)
    else:
        _print_verdict(verdict)
    if not verdict.consistent:
        raise typer.Exit(1)


def _print_verdict(verdict: Comparison) -> None:
    """The digests table, each unread peer with why, and one closing line: "consistent", or
    what keeps it from being so."""
    table = Table("namespace", *(report.node for report in verdict.nodes), "")
    for namespace in verdict.namespaces:
        cells = []
        for report in verdict.nodes:
            found = report.by_namespace().get(namespace)
            cells.append(f"{found.digest[:12]} ({found.rows})" if found else "-")
        table.add_row(namespace, *cells, "DIFFERS" if namespace in verdict.differing else "same")
    console.print(table)
    for url, message in verdict.errors.items():
        console.print(f"peer {url}: {message}", markup=False)
    if verdict.consistent:
        console.print("consistent", markup=False)
        return
    problems = []
    if verdict.differing:
        problems.append(f"{count(len(verdict.differing), 'namespace')} {agree(len(verdict.differing), 'differs', 'differ')}")
    if verdict.errors:
        unread = len(verdict.errors)
        problems.append(f"{count(unread, 'peer')} could not be read, so {agree(unread, 'its', 'their')} digests are unknown")
    console.print("not consistent: " + "; ".join(problems), markup=False)


@cluster_app.command("repair")
def repair(
    ctx: typer.Context,
    peers: str = PEERS_OPTION,
    peer_key_file: str = PEER_KEY_OPTION,
    quorum_client_cert: str = QUORUM_CLIENT_CERT_OPTION,
    quorum_client_key: str = QUORUM_CLIENT_KEY_OPTION,
    quorum_client_ca: str = QUORUM_CLIENT_CA_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Anti-entropy now, with every peer: find and repair what differs.

    Compares digest trees, exchanges only the rows of buckets that differ and ships each
    differing memory's state both ways (the usual merge decides). Running servers do this on
    their own every few catch-up rounds."""
    from memmesh.federation.antientropy import repair as run_repair

    clients = _peer_clients(ctx, peers, peer_key_file)  # first: its flags are settings, read once
    replica = state.service().replica
    reports = []
    for client in clients:
        try:
            hello = client.hello()
            replica.known(hello.node, client.url)
            reports.append(run_repair(replica, client, hello.node))
        finally:
            client.close()
    if as_json:
        print_json(reports)
        return
    for report in reports:
        console.print(
            f"{report.peer}: {count(len(report.namespaces_differing), 'namespace')} differed, "
            f"{count(report.memories, 'memory')} repaired, {count(report.rows_exchanged, 'row')} exchanged "
            f"({report.applied_here} applied here, {report.applied_there} there)",
            markup=False,
        )


@cluster_app.command("resync")
def resync(
    ctx: typer.Context,
    source: str = typer.Option(..., "--from", help="Base URL of the peer to copy the current state from."),
    peer_key_file: str = typer.Option(None, "--peer-key-file", help="Peer API key to send: a line 'URL KEY' or 'KEY'."),
    quorum_client_cert: str = QUORUM_CLIENT_CERT_OPTION,
    quorum_client_key: str = QUORUM_CLIENT_KEY_OPTION,
    quorum_client_ca: str = QUORUM_CLIENT_CA_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Copy the current state of one peer into this store (with this node's server stopped).

    For a node that was away longer than the tombstone retention (its peers answer
    resync_required). Memories the peer no longer has are archived here unless this node
    wrote them after it lost touch; then incremental sync works again."""
    from memmesh.federation.outbox import resync_from

    clients = _peer_clients(ctx, source, peer_key_file, timeout_s=60, configured_keys=False)
    if len(clients) != 1:
        for client in clients:
            client.close()
        raise typer.BadParameter("give one peer's base URL, such as http://10.0.0.2:9077", param_hint="--from")
    (client,) = clients
    url = client.url
    try:
        report = resync_from(state.service().replica, client)
    finally:
        client.close()
    if as_json:
        print_json(report)
    else:
        console.print(
            f"resynced from {url}: {report.applied} applied, {report.duplicates} already held, "
            f"{report.skipped} archived (deleted elsewhere while this node was away)",
            markup=False,
        )


@app.command("sync-daemon")
def sync_daemon(
    ctx: typer.Context,
    peers: str = typer.Option(..., "--peers", help="Comma-separated base URLs of the peer nodes."),
    interval: float = typer.Option(30.0, "--interval", min=0.1, help="Pull peers' changes this often (pushes follow every change)."),
    peer_key_file: str = typer.Option(None, "--peer-key-file", help="Peer API keys to send: lines 'URL KEY', or one 'KEY' for all."),
    node_id: str = typer.Option(None, "--node-id", help="This node's id (kept in the store)."),
) -> None:
    """Replicate a store that has no server: push its changes to peers and pull theirs,
    until SIGTERM or Ctrl-C."""
    from memmesh.compose import build_mesh

    state.set_from_options(
        ctx,
        {
            "node_id": "storage.node_id",
            "peers": "federation.peers",
            "interval": "federation.catchup_interval_secs",
            "peer_key_file": "federation.peer_key_file",
        },
    )
    service = state.service()
    mesh = build_mesh(service, state.settings())
    if mesh is None:
        raise typer.BadParameter("--peers names no peer URL")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    mesh.start()
    console.print(f"node {service.node_id} syncing with {count(len(mesh.peers), 'peer')} every {interval} s", markup=False)
    try:
        while not done.wait(1.0):
            pass
    finally:
        mesh.stop()
