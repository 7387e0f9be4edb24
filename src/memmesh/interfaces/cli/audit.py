"""``memmesh audit init-key|checkpoint|verify|export|prune``: the tamper-evident audit log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from memmesh.interfaces.cli.context import JSON_OPTION, app, console, print_json, state
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.wording import count

audit_app = typer.Typer(help="Verify, export, checkpoint and prune the audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("init-key")
def init_key_cmd(
    path: Path = typer.Option(
        None, "--path", help="Where to create the key (default: \\[audit] signing_key_file, else <data dir>/audit/signing.key)."
    ),
    name: str = typer.Option("memmesh-audit", "--name", help="The key's name in signature lines."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create the Ed25519 key that signs checkpoints (mode 0600, never overwritten) and its .pub."""
    from memmesh.audit.notes import KEY_FILE, audit_folder, init_key

    settings = state.settings()
    target = path or settings.audit.signing_key_file
    default = target is None
    if target is None:
        target = audit_folder(settings.data_dir) / KEY_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
    verifier = init_key(target, name)
    if as_json:
        print_json({"signing_key_file": str(target), "public_key": verifier.text(), "public_key_path": f"{target}.pub"})
        return
    console.print(f"created {target} (0600) and {target}.pub", markup=False, highlight=False)
    console.print(f"verifier key: {verifier.text()}", markup=False, highlight=False)
    if default or path is not None:
        console.print(f'set it in the config: [audit] signing_key_file = "{target}"', style="dim", markup=False, highlight=False)


@audit_app.command("checkpoint")
def checkpoint_cmd(as_json: bool = JSON_OPTION) -> None:
    """Sign a checkpoint of the committed log now (also done by `serve` every second)."""
    service = state.service()
    made = service.audit.checkpoint(principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json({"created": made is not None, "size": made.size if made else None, "note": made.note if made else None})
        return
    if made is None:
        console.print("no new entries since the last checkpoint", markup=False, highlight=False)
        return
    sys.stdout.write(made.note)


@audit_app.command("verify")
def verify_cmd(
    public_key: Path = typer.Option(
        None, "--public-key", help="Verifier key file (.pub) to check the checkpoints with; finding no checkpoint then fails."
    ),
    checkpoint_dir: Path = typer.Option(
        None, "--checkpoint-dir", help="Folder holding checkpoints.jsonl (default: \\[audit] checkpoint_dir, else <data dir>/audit)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recompute the chain and the Merkle tree and check every signed checkpoint; exit 1 and
    name the first bad entry when anything was changed, removed, inserted or rolled back."""
    from memmesh.audit.notes import Verifier

    verifier = None
    if public_key is not None:
        try:
            text = public_key.read_text()
        except OSError as exc:
            from memmesh.errors import InvalidInputError

            raise InvalidInputError(f"--public-key {public_key}: {exc.strerror}") from None
        verifier = Verifier.parse(text, f"--public-key {public_key}")
    folder = checkpoint_dir.expanduser() if checkpoint_dir is not None else None
    report = state.service().audit.verify(principal=LOCAL_PRINCIPAL, verifier=verifier, checkpoint_dir=folder)
    if as_json:
        print_json(report.as_dict())
    else:
        for problem in report.problems:
            where = f"entry {problem.index}: " if problem.index is not None else ""
            console.print(f"FAIL {problem.kind}: {where}{problem.message}", markup=False, highlight=False)
        for warning in report.warnings:
            console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
        if report.ok:
            console.print(f"ok: {report.summary()}", markup=False, highlight=False)
        elif report.first_bad_index is not None:
            console.print(f"first bad entry: {report.first_bad_index}", markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def export_cmd(
    since: int = typer.Option(0, "--since", help="First entry index to export."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array instead of JSON lines."),
) -> None:
    """Print entries (index, time, actor, action, namespace, target, detail, hash) as JSON lines."""
    entries = state.service().audit.iter_entries(principal=LOCAL_PRINCIPAL, since=since)
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    for entry in entries:
        sys.stdout.write(json.dumps(entry.model_dump(mode="json"), ensure_ascii=False) + "\n")


@audit_app.command("prune")
def prune_cmd(
    older_than_days: float = typer.Option(
        ..., "--older-than-days", help="Drop entries older than this many days (below a signed checkpoint)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Retention: drop old entries below a signed checkpoint; the prune is itself an entry."""
    report = state.service().audit.prune(older_than_days=older_than_days, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(report)
        return
    if report.pruned == 0:
        console.print("nothing to prune: no signed checkpoint lies below entries that old", markup=False, highlight=False)
    else:
        console.print(
            f"pruned {count(report.pruned, 'entry')} below {report.below} (signed checkpoint {report.checkpoint_size})",
            markup=False,
            highlight=False,
        )
