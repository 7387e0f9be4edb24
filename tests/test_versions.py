"""The replication merge rule, proven on simulated nodes (issue 24, "Deterministic merge").

Each simulated node makes versions exactly as the service does (``next_version`` with its
own hybrid logical clock, whose wall clock a test can skew by minutes) and applies versions
from peers with ``merge``, the rule replication will use. Hypothesis drives random
interleavings of writes, deletes, clock jumps and deliveries over 2–5 nodes; after every
node has heard from every other, all must hold the same thing, and the rule's promises
(causally later wins, HLC never goes backwards, ties never depend on the value) must hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memmesh.clock import HybridLogicalClock, format_hlc, parse_hlc
from memmesh.errors import ClockSkewError, InvalidInputError
from memmesh.model import Version
from memmesh.versions import Causality, compare_clocks, merge, next_version, stamp

START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class SkewedClock:
    """A wall clock shared by all nodes, plus this node's own offset (which may jump)."""

    def __init__(self, world: list[datetime]) -> None:
        self.world = world
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return self.world[0] + self.offset


@dataclass
class Held:
    version: Version
    value: str | None  # None: a tombstone
    seen: frozenset[tuple[tuple[int, int], str]]  # stamps of every version in its causal past


@dataclass
class SimNode:
    node_id: str
    clock: SkewedClock
    hlc: HybridLogicalClock = field(init=False)
    held: dict[str, Held] = field(default_factory=dict)
    issued: list[tuple[tuple[int, int], str]] = field(default_factory=list)
    conflicts: set[tuple[str, tuple[tuple[int, int], str]]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.hlc = HybridLogicalClock(self.clock)

    def write(self, key: str, value: str | None) -> None:
        previous = self.held.get(key)
        version = next_version(previous.version if previous else None, self.node_id, self.hlc)
        new_stamp = stamp(version)
        seen = previous.seen | {stamp(previous.version)} if previous else frozenset()
        # Causality: a write sorts after every version it has seen, whatever the clocks did.
        assert all(new_stamp > old for old in seen)
        # The HLC never goes backwards on one node, even when its wall clock jumps back.
        assert not self.issued or new_stamp[0] > self.issued[-1][0]
        self.issued.append(new_stamp)
        self.held[key] = Held(version, value, seen)

    def receive(self, key: str, incoming: Held) -> None:
        current = self.held.get(key)
        outcome = merge(
            current.version if current else None, incoming.version, same_value=current is not None and current.value == incoming.value
        )
        if current is None:
            self.held[key] = Held(incoming.version.model_copy(update={"clock": outcome.clock}), incoming.value, incoming.seen)
            return
        seen = current.seen | incoming.seen | {stamp(current.version), stamp(incoming.version)}
        winner = incoming if outcome.take_incoming else current
        if outcome.conflict:
            loser = current if outcome.take_incoming else incoming
            self.conflicts.add((key, stamp(loser.version)))
        self.held[key] = Held(winner.version.model_copy(update={"clock": outcome.clock}), winner.value, seen - {stamp(winner.version)})


def _operations(nodes: int) -> st.SearchStrategy[list[tuple[object, ...]]]:
    node = st.integers(0, nodes - 1)
    key = st.sampled_from(["m1", "m2", "m3"])
    value = st.sampled_from(["alpha", "beta", "gamma"])  # few values: equal values on two nodes happen often
    return st.lists(
        st.one_of(
            st.tuples(st.just("write"), node, key, value),
            st.tuples(st.just("delete"), node, key),
            st.tuples(st.just("deliver"), node, node, key),
            st.tuples(st.just("skew"), node, st.sampled_from([-300_000, -1, 0, 1, 300_000])),
            st.tuples(st.just("tick"), st.integers(0, 3)),
        ),
        max_size=60,
    )


@st.composite
def _scenarios(draw: st.DrawFn) -> tuple[int, list[tuple[object, ...]]]:
    nodes = draw(st.integers(2, 5))
    return nodes, draw(_operations(nodes))


def _run(nodes: int, operations: list[tuple[object, ...]]) -> list[SimNode]:
    world = [START]
    cluster = [SimNode(f"node-{i}", SkewedClock(world)) for i in range(nodes)]
    for op in operations:
        match op:
            case ("write", int(n), str(key), str(value)):
                cluster[n].write(key, value)
            case ("delete", int(n), str(key)):
                if key in cluster[n].held and cluster[n].held[key].value is not None:
                    cluster[n].write(key, None)
            case ("deliver", int(src), int(dst), str(key)):
                if src != dst and key in cluster[src].held:
                    cluster[dst].receive(key, cluster[src].held[key])
            case ("skew", int(n), int(ms)):
                cluster[n].clock.offset += timedelta(milliseconds=ms)
            case ("tick", int(ms)):
                world[0] += timedelta(milliseconds=ms)
    # Heal: everyone hears from everyone (twice, so what arrived late is passed on too).
    for _ in range(2):
        for src in cluster:
            for dst in cluster:
                for key in list(src.held):
                    if src is not dst:
                        dst.receive(key, src.held[key])
    return cluster


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scenarios())
def test_every_interleaving_converges_to_the_latest_stamp(scenario: tuple[int, list[tuple[object, ...]]]) -> None:
    nodes, operations = scenario
    cluster = _run(nodes, operations)
    first = cluster[0]
    for other in cluster[1:]:
        assert other.held.keys() == first.held.keys()
        for key, held in first.held.items():
            theirs = other.held[key]
            assert (theirs.version, theirs.value) == (held.version, held.value), key
    for key, held in first.held.items():
        # The winner is the greatest stamp ever written for the key: never decided by the value.
        every_stamp = held.seen | {stamp(held.version)}
        assert stamp(held.version) == max(every_stamp)
        # Its clock has seen every write: the next local write dominates all of them.
        writes_per_node: dict[str, int] = {}
        for _, writer in every_stamp:
            writes_per_node[writer] = writes_per_node.get(writer, 0) + 1
        assert held.version.clock == dict(sorted(writes_per_node.items()))
        # Nothing recorded as a conflict loser is what the cluster kept.
        for node in cluster:
            assert (key, stamp(held.version)) not in node.conflicts


def test_same_value_written_on_two_nodes_reaches_a_third_in_either_order() -> None:
    for order in ((0, 1), (1, 0)):
        world = [START]
        a, b, c = (SimNode(name, SkewedClock(world)) for name in ("a", "b", "c"))
        a.write("m", "same")
        b.write("m", "same")
        for source in order:
            c.receive("m", (a, b)[source].held["m"])
        assert stamp(c.held["m"].version) == max(stamp(a.held["m"].version), stamp(b.held["m"].version))
        assert c.conflicts == set()  # equal values: not a conflict worth reviewing


def test_two_nodes_delete_the_same_memory_and_it_stays_deleted() -> None:
    world = [START]
    a, b, c = (SimNode(name, SkewedClock(world)) for name in ("a", "b", "c"))
    a.write("m", "v1")
    b.receive("m", a.held["m"])
    c.receive("m", a.held["m"])
    a.write("m", None)
    b.write("m", None)
    for receiver, sender in ((c, a), (c, b), (a, b), (b, a)):
        receiver.receive("m", sender.held["m"])
    assert {n.held["m"].value for n in (a, b, c)} == {None}
    assert len({stamp(n.held["m"].version) for n in (a, b, c)}) == 1
    # A stale copy of the live version arriving later never brings it back.
    stale = Held(Version(clock={"a": 1}, node="a", hlc=format_hlc(*a.issued[0][0])), "v1", frozenset())
    c.receive("m", stale)
    assert c.held["m"].value is None


def test_a_write_after_seeing_a_future_version_wins_even_with_a_slow_clock() -> None:
    world = [START]
    fast, slow = SimNode("fast", SkewedClock(world)), SimNode("slow", SkewedClock(world))
    fast.clock.offset = timedelta(minutes=5)
    fast.write("m", "from the future")
    slow.receive("m", fast.held["m"])
    slow.write("m", "later, with a slow clock")
    fast.receive("m", slow.held["m"])
    assert fast.held["m"].value == "later, with a slow clock"
    assert fast.conflicts == set()


def test_concurrent_writes_are_a_conflict_on_every_node_that_sees_both() -> None:
    world = [START]
    a, b = SimNode("a", SkewedClock(world)), SimNode("b", SkewedClock(world))
    a.write("m", "tea")
    b.write("m", "coffee")
    a_copy, b_copy = a.held["m"], b.held["m"]
    a.receive("m", b_copy)
    b.receive("m", a_copy)
    assert a.held["m"].value == b.held["m"].value
    loser = min(stamp(a_copy.version), stamp(b_copy.version))
    assert a.conflicts == b.conflicts == {("m", loser)}


def test_merge_refuses_a_version_whose_clock_contradicts_its_stamp() -> None:
    earlier = Version(clock={"a": 1}, node="a", hlc=format_hlc(2_000_000_000_000, 0))
    claims_later = Version(clock={"a": 2}, node="a", hlc=format_hlc(1_000_000_000_000, 0))
    with pytest.raises(InvalidInputError, match="contradicts its vector clock"):
        merge(earlier, claims_later)
    with pytest.raises(InvalidInputError, match="needs its hlc and node"):
        merge(earlier, Version(clock={"b": 1}))


def test_compare_clocks() -> None:
    assert compare_clocks({"a": 1}, {"a": 1}) is Causality.EQUAL
    assert compare_clocks({"a": 2}, {"a": 1}) is Causality.AFTER
    assert compare_clocks({"a": 1}, {"a": 1, "b": 1}) is Causality.BEFORE
    assert compare_clocks({"a": 2}, {"a": 1, "b": 1}) is Causality.CONCURRENT


def test_hlc_refuses_a_peer_too_far_ahead_and_counts_it() -> None:
    world = [START]
    hlc = HybridLogicalClock(SkewedClock(world), max_ahead_ms=500)
    now_ms = int(START.timestamp() * 1000)
    hlc.observe(format_hlc(now_ms + 400, 0))  # within the bound: adopted
    assert parse_hlc(hlc.now()) > (now_ms + 400, 0)
    with pytest.raises(ClockSkewError, match="ahead of this node's clock"):
        hlc.observe(format_hlc(now_ms + 600_000, 0))
    assert hlc.refused == 1
    assert parse_hlc(hlc.now())[0] < now_ms + 600_000  # the refused time was not adopted


def test_hlc_never_goes_backwards_when_the_wall_clock_does() -> None:
    world = [START]
    wall = SkewedClock(world)
    hlc = HybridLogicalClock(wall)
    stamps = [hlc.now()]
    wall.offset = -timedelta(minutes=5)
    stamps += [hlc.now() for _ in range(3)]
    wall.offset = timedelta(minutes=5)
    stamps.append(hlc.now())
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_hlc_counter_overflow_moves_the_millisecond_keeping_text_order() -> None:
    world = [START]
    hlc = HybridLogicalClock(SkewedClock(world))
    ms = int(START.timestamp() * 1000)
    hlc.observe(format_hlc(ms, 99_999))
    after = hlc.now()
    assert parse_hlc(after) == (ms + 1, 0)
    assert after > format_hlc(ms, 99_999)


@pytest.mark.parametrize("bad", ["", "12.3", "abcdefghijklm.00000", "1234567890123.0000", "1234567890123.000001"])
def test_hlc_text_is_checked(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="hybrid logical clock"):
        parse_hlc(bad)
