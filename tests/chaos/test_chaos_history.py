"""The history checker (issue 18) on hand-made histories: what counts as stale, what as never written."""

from __future__ import annotations

from memmesh.chaos.history import Op, check_history, parse_register, register_content


def w(value: int, invoked: float, returned: float, ok: bool = True, key: str = "k") -> Op:
    return Op("write", key, value, "node-a", invoked, returned, ok)


def r(value: int | None, invoked: float, returned: float, key: str = "k", node: str = "node-b") -> Op:
    return Op("read", key, value, node, invoked, returned, True)


def test_a_read_after_an_acknowledged_write_must_see_it_or_later() -> None:
    history = [w(1, 0, 1), w(2, 2, 3), r(2, 4, 5), r(1, 4, 5), r(0, 3.5, 4)]
    strict = check_history(history, strict=True)
    assert strict["stale_reads"] == 2 and strict["violations"] == 2 and strict["phantom_reads"] == 0
    assert {(f["value"], f["acked_before"]) for f in strict["stale_examples"]} == {(1, 2), (0, 2)}
    relaxed = check_history(history, strict=False)
    assert relaxed["stale_reads"] == 2 and relaxed["violations"] == 0  # counted, allowed below W = N


def test_concurrent_and_unacknowledged_writes_may_or_may_not_be_seen() -> None:
    history = [
        w(1, 0, 1),
        w(2, 2, 6),  # acknowledged after the reads began: either value is fine
        r(1, 3, 4),
        r(2, 3, 4),
        w(3, 7, 8, ok=False),  # not acknowledged: reads may see 2 or 3
        r(2, 9, 10),
        r(3, 9, 10),
        r(0, 0.5, 0.8),  # before the create answered: not there yet is fine
    ]
    report = check_history(history, strict=True)
    assert report["violations"] == 0 and report["stale_reads"] == 0 and report["reads_answered"] == 5
    assert report["register_writes"] == 3 and report["register_writes_acked"] == 2


def test_a_value_never_written_or_written_after_the_read_answered_is_always_a_violation() -> None:
    history = [w(1, 0, 1), r(7, 2, 3), r(None, 2, 3), w(2, 5, 6), r(2, 3, 4)]
    report = check_history(history, strict=False)
    assert report["phantom_reads"] == 3 and report["violations"] == 3 and report["stale_reads"] == 0


def test_registers_are_checked_each_on_its_own_and_unanswered_reads_are_skipped() -> None:
    history = [w(3, 0, 1, key="a"), w(1, 0, 1, key="b"), r(1, 2, 3, key="b"), Op("read", "a", None, "node-c", 2, 3, False)]
    report = check_history(history, strict=True)
    assert report["violations"] == 0 and report["reads"] == 2 and report["reads_answered"] == 1


def test_register_contents_round_trip() -> None:
    assert parse_register(register_content("01abc", 12)) == 12
    assert parse_register("register 01abc v") is None and parse_register("chaos write 3") is None
