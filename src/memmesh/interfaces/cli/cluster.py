"""``memmesh cluster status`` and ``memmesh sync-daemon``: the mesh from the terminal."""

from __future__ import annotations

import signal
import threading

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
