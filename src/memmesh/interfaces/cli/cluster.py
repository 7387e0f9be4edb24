"""``memmesh cluster status`` and ``memmesh sync-daemon``: the mesh from the terminal."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer
from rich.table import Table

from memmesh.interfaces.cli.context import JSON_OPTION, app, console, print_json, state
from memmesh.model import LOCAL_PRINCIPAL

cluster_app = typer.Typer(help="This node's place in the mesh: peers, lag, outbox, clocks.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("status")
def status(as_json: bool = JSON_OPTION) -> None:
    """Peers (id, URL), cursors, outbox depth, last contact and clocks, from the store."""
    report = state.service().replica.status(principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(report)
        return
    console.print(
        f"node {report.node_id}  hlc {report.hlc}  changes {report.change_counter}  "
        f"clock refusals {report.clock_refused}  purged up to {report.purged_seq}",
        markup=False,
    )
    table = Table("peer", "url", "sent", "received", "outbox", "last contact", "error")
    for peer in report.peers:
        table.add_row(
            peer.node_id or "?",
            peer.url or "",
            str(peer.sent_seq),
            str(peer.recv_seq),
            str(peer.outbox_changes),
            peer.last_contact.isoformat(timespec="seconds") if peer.last_contact else "never",
            peer.last_error or "",
        )
    console.print(table)


@cluster_app.command("resync")
def resync(
    source: str = typer.Option(..., "--from", help="Base URL of the peer to copy the current state from."),
    peer_key_file: str = typer.Option(None, "--peer-key-file", help="Peer API key to send: a line 'URL KEY' or 'KEY'."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Full resync of this store from one peer (run it with this node's server stopped):
    for a node that was away longer than the tombstone retention (``resync_required``).
    Memories the peer no longer has are archived here unless this node wrote them after it
    lost touch; then incremental sync works again."""
    from memmesh.federation.outbox import resync_from
    from memmesh.federation.peers import PeerClient, parse_peer_list, read_peer_keys

    (url,) = parse_peer_list(source) or [source]
    key = read_peer_keys(Path(peer_key_file) if peer_key_file else None, [url])[url]
    client = PeerClient(url, key, timeout_s=60)
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
    peers: str = typer.Option(..., "--peers", help="Comma-separated base URLs of the peer nodes."),
    interval: float = typer.Option(30.0, "--interval", min=0.1, help="Pull peers' changes this often (pushes follow every change)."),
    peer_key_file: str = typer.Option(None, "--peer-key-file", help="Peer API keys to send: lines 'URL KEY', or one 'KEY' for all."),
    node_id: str = typer.Option(None, "--node-id", help="This node's id (kept in the store)."),
) -> None:
    """Replicate a store that has no server: push its changes to peers and pull theirs,
    until SIGTERM or Ctrl-C."""
    from memmesh.compose import build_mesh

    state.extra_overrides.update(
        {
            "storage": {"node_id": node_id},
            "federation": {"peers": peers, "catchup_interval_secs": interval, "peer_key_file": peer_key_file},
        }
    )
    service = state.service()
    mesh = build_mesh(service, state.settings())
    if mesh is None:
        raise typer.BadParameter("--peers names no peer URL")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    mesh.start()
    console.print(f"node {service.node_id} syncing with {len(mesh.peers)} peer(s) every {interval} s", markup=False)
    try:
        while not done.wait(1.0):
            pass
    finally:
        mesh.stop()
