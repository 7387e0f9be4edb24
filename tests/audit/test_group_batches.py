"""memmesh.audit.group.GroupCommit on its own (the PostgreSQL audit's group commit, issue 24):
groups are bounded, every caller gets its own result, a failed group fails exactly its
callers, and the next group starts when the previous one says it committed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from memmesh.audit.group import GroupCommit


def _submit_all(group: GroupCommit[int, int], items: list[int]) -> dict[int, object]:
    outcomes: dict[int, object] = {}

    def one(item: int) -> None:
        try:
            outcomes[item] = group.submit(item)
        except Exception as exc:
            outcomes[item] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


def test_groups_are_bounded_and_each_caller_gets_its_own_result() -> None:
    gate = threading.Event()
    sizes: list[int] = []

    def write(items: Sequence[int], committed: Callable[[], None]) -> list[int]:
        gate.wait(10)  # the first (lone) group holds the lead until everyone has queued
        sizes.append(len(items))
        committed()
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(write, limit=4)
    first = threading.Thread(target=group.submit, args=(0,))
    first.start()
    while group.batches < 1:
        time.sleep(0.001)
    waiting = threading.Thread(target=lambda: _submit_all(group, list(range(1, 11))))
    waiting.start()
    while len(group._queue) < 10:
        time.sleep(0.001)
    gate.set()
    waiting.join(30)
    first.join(30)
    assert sizes[0] == 1 and sum(sizes) == 11 and max(sizes) == 4, sizes
    assert group.batches == len(sizes)


def test_a_failed_group_fails_its_callers_only_and_the_next_group_runs() -> None:
    gate = threading.Event()

    def write(items: Sequence[int], committed: Callable[[], None]) -> list[int]:
        gate.wait(10)
        if 13 in items:
            raise ValueError("refused: 13 is in this group")
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(write)
    first = threading.Thread(target=group.submit, args=(1,))
    first.start()
    while group.batches < 1:
        time.sleep(0.001)
    outcomes: dict[int, object] = {}
    waiting = threading.Thread(target=lambda: outcomes.update(_submit_all(group, [12, 13, 14])))
    waiting.start()
    while len(group._queue) < 3:
        time.sleep(0.001)
    gate.set()
    waiting.join(30)
    first.join(30)
    assert all(isinstance(outcomes[i], ValueError) and "13" in str(outcomes[i]) for i in (12, 13, 14)), outcomes
    assert len({id(o) for o in outcomes.values()}) == 3, "callers share one exception object (and its traceback)"
    assert group.submit(20) == 20  # the lead was handed on: a later caller is not stuck


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GroupCommit(lambda items, committed: list(items), limit=0)
