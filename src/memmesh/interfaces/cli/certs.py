"""``memmesh certs init|fingerprint``: a small CA and node certificates for an mTLS mesh."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from memmesh.interfaces.cli.context import JSON_OPTION, app, console, print_json

certs_app = typer.Typer(help="Make certificates for mTLS between mesh nodes and read their fingerprints.", no_args_is_help=True)
app.add_typer(certs_app, name="certs")


@certs_app.command("init")
def init(
    directory: Path = typer.Option(..., "--dir", help="Where to write ca.pem, ca.key, <node>.pem, <node>.key and allowlist.txt."),
    nodes: str = typer.Option(..., "--nodes", help="Comma-separated node names, e.g. node-a,node-b,node-c."),
    hosts: str = typer.Option("127.0.0.1,localhost", "--hosts", help="Host names / IPs the nodes are reached at (certificate SANs)."),
    days: int = typer.Option(825, "--days", min=1, max=3650, help="Validity of the node certificates."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Make a CA (or reuse the one in --dir) and one server+client certificate per node;
    keys are written mode 0600, fingerprints appended to allowlist.txt."""
    from memmesh.tls import init_certs

    made = init_certs(directory, nodes.split(","), hosts.split(","), days=days)
    if as_json:
        print_json(
            {
                "dir": str(made.dir),
                "ca_cert": str(made.ca_cert),
                "ca_key": str(made.ca_key),
                "ca_created": made.ca_created,
                "allowlist": str(made.allowlist),
                "nodes": [{"name": n.name, "cert": str(n.cert), "key": str(n.key), "fingerprint": n.fingerprint} for n in made.nodes],
            }
        )
        return
    ca_note = "new CA" if made.ca_created else "existing CA"
    console.print(f"{ca_note} {made.ca_cert} (keep {made.ca_key} offline: it can mint node certificates)", markup=False)
    for node in made.nodes:
        console.print(f"{node.name}: {node.cert}  {node.key}  {node.fingerprint}", markup=False, highlight=False)
    console.print(f"allowlist: {made.allowlist}\n\nserve flags per node (add --node-id, --peers https://…, --port):", markup=False)
    for node in made.nodes:
        flags = [
            "--tls-cert", str(node.cert), "--tls-key", str(node.key), "--tls-client-ca", str(made.ca_cert),
            "--mtls-allowlist", str(made.allowlist),
            "--quorum-client-cert", str(node.cert), "--quorum-client-key", str(node.key), "--quorum-client-ca", str(made.ca_cert),
        ]  # fmt: skip
        console.print(f"  {node.name}: " + " ".join(shlex.quote(f) for f in flags), markup=False, highlight=False, soft_wrap=True)


@certs_app.command("fingerprint")
def fingerprint(file: Path = typer.Argument(..., help="A certificate, PEM or DER.")) -> None:
    """Print a certificate's SHA-256 fingerprint, the form an mTLS allowlist takes."""
    from memmesh.tls import fingerprint_file

    typer.echo(fingerprint_file(file))
