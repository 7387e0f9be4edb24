"""Extraction and the curator share one rule set (issue 23): the same pair of statements gets
the same verdict whether the extractor meets the second on write (``Memory.add(messages=…)``)
or a curator run finds both in the store (``Memory.curate()``), on a keyword-only store and
on a MiniLM store. Nothing is ever deleted: every verdict is a link or a merge."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import keyword_settings

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.extraction.offline import extract_turn
from memmesh.model import Relation

PAIRS = [
    # (first said, said later, who says the second, verdict)
    ("I live in Paris.", "I moved to Berlin last year.", "Ana", "update"),
    ("I love coffee so much.", "I don't drink coffee anymore.", "Ana", "update"),
    ("I work at Acme Corp.", "I work at Globex now.", "Ana", "update"),
    ("My favourite colour is blue.", "My favourite colour is green.", "Ana", "update"),
    ("I love green tea.", "I hate green tea.", "Ana", "contradiction"),
    ("Our team runs 3 servers in Frankfurt.", "Our team runs 5 servers in Frankfurt.", "Ana", "contradiction"),
    ("I love hiking in the Alps.", "I really love hiking in the Alps.", "Ana", "duplicate"),
    ("I live in Paris.", "I live in Rome.", "Bo", "new"),
    ("I love green tea.", "I play the violin every Sunday.", "Ana", "new"),
]


@pytest.fixture(params=["keyword", "minilm"])
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Memory]]:
    opened: list[Memory] = []

    def make(name: str) -> Memory:
        if request.param == "minilm":
            data_dir = tmp_path_factory.getbasetemp() / "minilm-data"
            data_dir.mkdir(exist_ok=True)
            (data_dir / "empty.toml").write_text("")
            overrides: dict[str, Any] = {"data_dir": str(data_dir), "embeddings": {"provider": "minilm"}}
            settings = load_settings(data_dir / "empty.toml", overrides=overrides, env={})
        else:
            settings = keyword_settings(tmp_path)
        mem = Memory(f"sqlite:///{tmp_path / name}.db", settings)
        opened.append(mem)
        return mem

    yield make
    for mem in opened:
        mem.close()


def _say(mem: Memory, text: str, name: str) -> Any:
    result = mem.add(messages=[{"role": "user", "name": name, "content": text}], session_id="s1", namespace="people")
    assert result.report is not None and result.report.failed == []
    return result.report


def _extractor_verdict(mem: Memory, first: str, second: str, name: str) -> tuple[str, str, str | None]:
    old = _say(mem, first, "Ana")
    new = _say(mem, second, name)
    (old_id,), (new_id,) = old.fact_ids, new.fact_ids
    kinds = {(link.target_id, link.relation) for link in mem.links(new_id) if link.source_id == new_id}
    if new.merged == 1 and new_id == old_id:
        return "duplicate", old_id, None
    assert new.extracted == 1
    if (old_id, Relation.supersedes) in kinds:
        assert new.superseded == 1
        return "update", old_id, new_id
    if (old_id, Relation.contradicts) in kinds:
        assert new.contradicted == 1
        return "contradiction", old_id, new_id
    assert new.superseded == 0 and new.contradicted == 0
    return "new", old_id, new_id


def _curator_verdict(mem: Memory, first: str, second: str) -> str:
    old = mem.add(first, namespace="people")
    new = mem.add(second, namespace="people")
    report = mem.curate()
    pair = {old.id, new.id}
    if any(pair <= {c.keep, *c.superseded} for c in report.clusters):
        return "duplicate"
    if any((u.new, u.old) == (new.id, old.id) for u in report.updates):
        assert report.updates_found == 1
        links = mem.links(new.id)
        assert any(lk.source_id == new.id and lk.target_id == old.id and lk.relation is Relation.supersedes for lk in links)
        return "update"
    if any({c.a, c.b} == pair for c in report.contradictions):
        return "contradiction"
    return "new"


@pytest.mark.parametrize(("first", "second", "name", "verdict"), PAIRS, ids=[f"{p[3]}:{p[1][:24]}" for p in PAIRS])
def test_the_extractor_and_the_curator_give_one_verdict(
    open_store: Callable[[str], Memory], first: str, second: str, name: str, verdict: str
) -> None:
    extracted = open_store("extract")
    found, old_id, new_id = _extractor_verdict(extracted, first, second, name)
    assert found == verdict
    # the curator, given the very texts the extractor stored, decides the same
    old_text = extracted.get(old_id).content
    new_text = extracted.get(new_id).content if new_id else extract_turn(second, name=name)[0].content
    assert _curator_verdict(open_store("curate"), old_text, new_text) == verdict
    # and a curator run over the extractor's store finds nothing left to decide about the pair
    after = extracted.curate()
    ids = {old_id, new_id} - {None}
    assert not [u for u in after.updates if {u.new, u.old} <= ids]
    assert not [c for c in after.contradictions if {c.a, c.b} <= ids]
    assert not [c for c in after.clusters if ids <= {c.keep, *c.superseded} and len(ids) > 1]
    # never deleted: both statements are still there
    assert extracted.get(old_id).content == old_text
    if new_id:
        assert extracted.get(new_id).content == new_text
