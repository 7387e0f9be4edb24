"""``audit verify``: recompute the chain and the tree, check every checkpoint against them.

Pure over its inputs (stored rows, the prune anchor, parsed checkpoints, the verifier key),
so the tamper trials can drive it fast. What each finding means:

- ``modified`` / ``missing`` / ``out_of_order``: a row's hash does not follow from the one
  before, or its index is not the next one: that index is the first bad one.
- ``diverged``: the chain is self-consistent but a signed checkpoint's root differs: the
  log was rewritten (hashes recomputed). The first bad index is the size of the last
  checkpoint that still matches: everything below it is vouched for, entries from it on are
  not (exact when checkpoints are as dense as the entries; within one checkpoint interval
  otherwise).
- ``rollback``: the log ends before a signed checkpoint's size: its tail was cut or an
  older copy of the database was restored. The first bad index is the first missing one.
- ``split_view``: two validly signed checkpoints of one size with different roots.
- ``bad_signature``, ``bad_checkpoint``: a checkpoint not signed by the configured key, or
  an unreadable line in the checkpoint file.
- ``no_checkpoint``: a verifier key was given (``--public-key``, ``[audit] public_key_path``)
  but the checkpoint folder holds no checkpoint of this log: the key has nothing to check, and
  a cut tail or a rewritten log would pass (:func:`expect_checkpoints`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memmesh.audit.chain import GENESIS, Frontier
from memmesh.audit.notes import LOG_FILE, Checkpoint, CheckpointFile, Verifier, signed_by
from memmesh.audit.walk import MISPLACED, MODIFIED, ChainWalk
from memmesh.store.audit_sql import Anchor


@dataclass
class Problem:
    kind: str
    index: int | None
    message: str


@dataclass
class VerifyReport:
    """The outcome of one verification; ``ok`` is False when any problem was found."""

    entries: int = 0
    first_index: int = 0
    size: int = 0
    checkpoints_checked: int = 0
    latest_checkpoint: int | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    workers: int = 1
    """Processes that checked the entries (more than one for a long SQLite log: :mod:`.parallel`)."""
    checkpoint_dir: str | None = None
    """The folder the checkpoints were read from (None: none is configured)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_index(self) -> int | None:
        found = [p.index for p in self.problems if p.index is not None]
        return min(found) if found else None

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok, "first_bad_index": self.first_bad_index}

    def summary(self) -> str:
        """What was verified, in one line (an empty log says so, never ``entries 0..-1``)."""
        if self.size > self.first_index:
            return f"entries {self.first_index}..{self.size - 1} verified, {self.checkpoints_checked} signed checkpoints consistent"
        if self.first_index:
            return f"no entries after the {self.first_index} pruned ones, {self.checkpoints_checked} signed checkpoints consistent"
        return "the log is empty: no entries to verify"


NO_CHECKPOINT = "no signed checkpoint: only the hash chain was checked (a cut tail or a full rewrite would go unnoticed)"


def expect_checkpoints(report: VerifyReport, found: CheckpointFile, folder: Path | None) -> None:
    """A verifier given a key expects checkpoints: finding none of this log is a failure, not a
    warning. Without one, a log whose tail was cut, that was wiped, or that was rewritten whole
    (anchor and checkpoint files removed with it) verifies as a shorter or empty chain."""
    if found.checkpoints:
        return  # their signatures and roots were checked (bad ones are problems already)
    where = f"in {folder / LOG_FILE}" if folder is not None else "(no checkpoint folder is configured)"
    report.problems.append(
        Problem(
            "no_checkpoint",
            None,
            f"no checkpoint of this log was found {where}, but a verifier key was given: without one, a cut tail or a "
            "rewritten log would pass; point [audit] checkpoint_dir (MEMMESH_AUDIT_CHECKPOINT_DIR) or "
            "`memmesh audit verify --checkpoint-dir` at the folder the signer writes its checkpoints to",
        )
    )
    report.warnings = [w for w in report.warnings if w != NO_CHECKPOINT]


def _signed(found: CheckpointFile, verifier: Verifier | None, report: VerifyReport) -> dict[int, Checkpoint]:
    """Checkpoints whose signature holds, by size; split views and bad lines reported."""
    for _, message in found.bad_lines:
        report.problems.append(Problem("bad_checkpoint", None, message))
    if found.torn_tail:
        report.warnings.append("the checkpoint file ends in a line cut short (a crash while writing it); that checkpoint is ignored")
    by_size: dict[int, Checkpoint] = {}
    if verifier is None:
        if found.checkpoints:
            report.warnings.append("no verifier key ([audit] signing_key_file or --public-key): checkpoints were not checked")
        return by_size
    for checkpoint, signatures in found.checkpoints:
        if not signed_by(checkpoint.note, signatures, verifier):
            report.problems.append(
                Problem("bad_signature", None, f"checkpoint of size {checkpoint.size} is not signed by key {verifier.name!r}")
            )
            continue
        seen = by_size.get(checkpoint.size)
        if seen is not None and seen.root != checkpoint.root:
            report.problems.append(
                Problem(
                    "split_view",
                    None,
                    f"split view: two signed checkpoints of size {checkpoint.size} have different roots "
                    f"({base64.b64encode(seen.root).decode()} and {base64.b64encode(checkpoint.root).decode()})",
                )
            )
            continue
        by_size[checkpoint.size] = checkpoint
    return by_size


def _misplaced(idx: object, expected: int) -> Problem:
    """The row where entry ``expected`` belongs has another index (or one that is not an int)."""
    if type(idx) is int and idx > expected:
        return Problem("missing", expected, f"entry {expected} is missing (the next row is {idx})")
    return Problem("out_of_order", expected, f"row {idx!r} stands where entry {expected} belongs")


def verify_log(rows: Iterable[Sequence[Any]], anchor: Anchor | None, found: CheckpointFile, verifier: Verifier | None) -> VerifyReport:
    """Check every row (``(idx, at, actor, action, namespace, target, detail, hash)`` in index
    order), the tree at every signed checkpoint size, and the log's length."""
    report = VerifyReport()
    checkpoints = _signed(found, verifier, report)
    report.latest_checkpoint = max(checkpoints) if checkpoints else None
    start = anchor.size if anchor is not None else 0
    prev = bytes.fromhex(anchor.last_hash) if anchor is not None else GENESIS
    try:
        frontier = Frontier.from_hex(start, anchor.frontier) if anchor is not None else Frontier()
    except ValueError:
        report.problems.append(Problem("modified", start, f"the prune anchor's compact range is damaged (it must cover {start} entries)"))
        return report
    report.first_index = start
    if anchor is not None and start in checkpoints and frontier.root() != checkpoints[start].root:
        report.problems.append(
            Problem("diverged", start, f"the pruned range [0, {start}) does not match the signed checkpoint of size {start}")
        )
    sizes = sorted(s for s in checkpoints if s > start)
    last_good = max([s for s in checkpoints if s <= start], default=0)
    walk = ChainWalk(prev, frontier.nodes, frontier.size, start)
    for size in walk.run(rows, stops=set(sizes)):
        if frontier.root() != checkpoints[size].root:
            report.problems.append(
                Problem(
                    "diverged",
                    last_good,
                    f"the log differs from signed checkpoint {size} from index {last_good} on "
                    f"(entries below {last_good} match checkpoint {last_good}): it was rewritten",
                )
            )
            break
        report.checkpoints_checked += 1
        last_good = size
    expected = walk.expected
    if walk.failure == MISPLACED:
        report.problems.append(_misplaced(walk.bad_idx, expected))
    elif walk.failure == MODIFIED:
        report.problems.append(Problem("modified", expected, f"entry {expected} does not match its hash (changed, replaced or moved)"))
    frontier.size = walk.size
    return finish(report, start, expected)


def finish(report: VerifyReport, start: int, expected: int) -> VerifyReport:
    """Close a pass that checked entries ``[start, expected)``: its counts, and what the log's
    length says against the newest signed checkpoint (shared by the one-process pass and
    :mod:`.parallel`)."""
    report.entries = expected - start
    report.size = expected
    if not report.problems:
        latest = report.latest_checkpoint
        if latest is not None and latest > expected:
            report.problems.append(
                Problem(
                    "rollback",
                    expected,
                    f"rollback: the log ends at entry {expected - 1} but signed checkpoint {latest} covers {latest} entries: "
                    f"entries {expected}..{latest - 1} were cut off, or an older copy of the log was restored",
                )
            )
        elif latest is None:
            report.warnings.append(NO_CHECKPOINT)
        elif latest < expected:
            report.warnings.append(f"entries {latest}..{expected - 1} are newer than the last checkpoint (hash chain only)")
    return report
