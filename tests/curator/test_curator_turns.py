"""Session turns are judged by their words: the ``[turn N] role:`` prefix that numbers them is
not something they say (two turns saying the same thing were linked `contradicts`, "2 vs 1")."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import keyword_settings

from memmesh import Memory


def test_two_turns_saying_the_same_thing_are_not_a_contradiction(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'turns.db'}", keyword_settings(tmp_path)) as mem:
        mem.session_append("s1", role="user", content="The deploy window is Tuesday afternoon for the whole team.")
        mem.session_append("s1", role="user", content="Our deploy window is on Tuesday afternoon for the whole team.")
        report = mem.curate()
    assert [found.reason for found in report.contradictions] == []
