"""Versions of replicated objects: how they are made and the one merge rule every node applies.

Every version of a replicated object (a memory, its tombstone, a link) carries a
:class:`~memmesh.model.Version`: a vector clock ``{node_id: counter}``, the writing node and
a hybrid logical clock (HLC) timestamp. Two versions of the same object are merged by one
rule, with no reference to their values:

* **The version with the greater stamp ``(hlc, node)`` wins.** Because a node observes the
  HLC of the version it replaces before stamping a new one (see
  ``Service._next_version``), a causally later version always has the greater stamp, so
  this single rule is both "causally newer wins" and, for concurrent versions,
  "last writer on (HLC, node id) wins". It is a join (max over a total order): applying
  versions in any order, any number of times, ends in the same winner on every node.
* **Deletes are versions too.** A tombstone beats every version it has seen (its stamp is
  greater), so a stale replica can never bring a deleted memory back. A write concurrent
  with a delete wins only if its stamp is greater, and the pair is recorded as a conflict.
* **Vector clocks say whether two versions are concurrent** (neither has seen the other):
  only then is the overwritten one a *conflict* to record (the loser stays in history and a
  ``contradicts`` link points at it). The kept clock is the pointwise maximum of both, so
  the next local write dominates everything this node has seen.

This module is part of the core (the service stamps every write with :func:`next_version`);
replication transports apply :func:`merge` and never decide a winner on their own.

A version whose clock claims to follow another while its stamp is smaller breaks the HLC
invariant (a buggy or hostile peer); :func:`merge` refuses it rather than guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from memmesh.clock import HybridLogicalClock, parse_hlc
from memmesh.errors import InvalidInputError
from memmesh.model import Version


class Causality(Enum):
    """How two vector clocks relate."""

    BEFORE = "before"
    """The first has been seen by the second."""
    AFTER = "after"
    """The first has seen the second."""
    EQUAL = "equal"
    CONCURRENT = "concurrent"
    """Neither has seen the other: two writers that did not know of each other."""


def compare_clocks(first: Mapping[str, int], second: Mapping[str, int]) -> Causality:
    """The causal relation of two vector clocks (missing entries count as 0)."""
    first_ahead = second_ahead = False
    for node in first.keys() | second.keys():
        a, b = first.get(node, 0), second.get(node, 0)
        first_ahead |= a > b
        second_ahead |= b > a
    if first_ahead and second_ahead:
        return Causality.CONCURRENT
    if first_ahead:
        return Causality.AFTER
    if second_ahead:
        return Causality.BEFORE
    return Causality.EQUAL


def merge_clocks(first: Mapping[str, int], second: Mapping[str, int]) -> dict[str, int]:
    """Pointwise maximum: a clock that has seen everything either clock has seen."""
    return {node: max(first.get(node, 0), second.get(node, 0)) for node in sorted(first.keys() | second.keys())}


def next_version(previous: Version | None, node_id: str, hlc: HybridLogicalClock) -> Version:
    """The version of a local write that replaces ``previous`` (``None`` for a new object).

    Its vector clock counts one more write by this node, and its HLC is stamped after
    observing ``previous``'s, so it sorts after the version it replaces even when that one
    came from a node whose clock runs ahead: causally later writes win every merge.
    """
    clock = dict(previous.clock) if previous else {}
    clock[node_id] = clock.get(node_id, 0) + 1
    if previous is not None and previous.hlc:
        hlc.observe(previous.hlc, check_ahead=False)  # held already: checked when it arrived
    return Version(clock=clock, node=node_id, hlc=hlc.now())


def stamp(version: Version) -> tuple[tuple[int, int], str]:
    """The total order every node agrees on: HLC timestamp, then node id."""
    if not version.hlc or not version.node:
        raise InvalidInputError("a replicated version needs its hlc and node: without them no node could order it")
    return parse_hlc(version.hlc), version.node


@dataclass(frozen=True)
class Merge:
    """The outcome of merging an incoming version into the current one."""

    take_incoming: bool
    """Whether the incoming version replaces what the node holds."""
    conflict: bool
    """The two versions were concurrent and different: the loser is recorded for review."""
    clock: dict[str, int]
    """The vector clock to keep with the winner (pointwise max of both)."""
    duplicate: bool = False
    """The incoming version is the one already held: only its clock may add to ours."""


def merge(current: Version | None, incoming: Version, *, same_value: bool | None = None) -> Merge:
    """Decide what a node keeps when ``incoming`` arrives for an object it holds as ``current``.

    ``same_value`` (optional) tells whether both versions carry the same content; two
    concurrent writes of the same value are not a conflict worth reviewing.
    """
    if current is None:
        return Merge(take_incoming=True, conflict=False, clock=merge_clocks({}, incoming.clock))
    ours, theirs = stamp(current), stamp(incoming)
    clock = merge_clocks(current.clock, incoming.clock)
    if ours == theirs:
        # A stamp names one write (a node's HLC never repeats): this is the version already held,
        # perhaps carrying a clock that has seen more since; keep the joined clock.
        return Merge(take_incoming=False, conflict=False, clock=clock, duplicate=True)
    causality = compare_clocks(incoming.clock, current.clock)
    incoming_wins = theirs > ours
    if (causality is Causality.AFTER and not incoming_wins) or (causality is Causality.BEFORE and incoming_wins):
        raise InvalidInputError(
            f"version {incoming.hlc}@{incoming.node} contradicts its vector clock: a causally "
            "later version must carry a later hybrid logical clock"
        )
    conflict = causality is Causality.CONCURRENT and same_value is not True
    return Merge(take_incoming=incoming_wins, conflict=conflict, clock=clock)
