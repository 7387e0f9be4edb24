"""Extraction with an LLM, against a real local fake server that misbehaves: broken JSON,
wrong types, timeouts, 429s. Every turn is stored whatever happens; every failure is counted
with its reason; turns the LLM could not handle fall back to the offline extractor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_openai import FakeOpenAI, Reply, fake_openai
from memmesh import Memory
from memmesh.config import Settings, load_settings
from memmesh.extraction.llm_extract import SCHEMA
from memmesh.model import Kind, Relation

TALK = [
    {"role": "user", "name": "Ana", "content": "I moved to Lyon last month."},
    {"role": "assistant", "content": "Lovely city."},
    {"role": "user", "name": "Ana", "content": "I love green tea."},
]
GOOD = {
    "facts": [
        {
            "turn": 1,
            "content": "Ana moved to Lyon in May 2024.",
            "kind": "episode",
            "tags": ["move", "Home Town"],
            "subject": "Ana",
            "attribute": "lives in",
            "value": "Lyon",
        },
        {
            "turn": 3,
            "content": "Ana loves green tea.",
            "kind": "preference",
            "tags": ["drinks"],
            "subject": None,
            "attribute": None,
            "value": None,
        },
    ]
}


def keyword_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Keyword-only settings in tmp_path (no conftest import: module names clash across test folders)."""
    data: dict[str, object] = {"data_dir": str(tmp_path), "embeddings": {"provider": "none"}, **overrides}
    return load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""})


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server


def open_memory(tmp_path: Path, server: FakeOpenAI, **extraction: Any) -> Memory:
    settings = keyword_settings(
        tmp_path,
        llm={"base_url": server.url, "model": "fake", "timeout_s": 0.5, "retries": 1, "max_backoff_s": 0.05},
        extraction={"repairs": 1, **extraction},
    )
    return Memory(f"sqlite:///{tmp_path / 'llm.db'}", settings)


def turns_stored(mem: Memory, namespace: str) -> int:
    return sum(1 for m in mem.get_all(namespace=namespace, limit=1000) if m.kind is Kind.message)


def test_valid_reply_is_stored_with_the_models_kinds_tags_and_slots(tmp_path: Path, llm: FakeOpenAI) -> None:
    llm.script = [Reply(content=json.dumps(GOOD))]
    with open_memory(tmp_path, llm) as mem:
        result = mem.add(messages=TALK, session_id="s", namespace="p")
        report = result.report
        assert report is not None and report.mode == "llm"
        assert (report.extracted, report.fallback, report.repairs, report.failed) == (2, 0, 0, [])
        moved, tea = (mem.get(i) for i in report.fact_ids)
        assert moved.kind is Kind.episode and moved.tags == ["extracted", "move", "home-town"]
        assert moved.metadata["slot"] == "ana|lives in" and moved.metadata["value"] == "lyon"
        assert [link.target_id for link in mem.links(tea.id) if link.relation is Relation.derived_from] == [result.turns[2].memory_id]
    request = llm.requests[0]["body"]
    assert request["response_format"]["json_schema"]["schema"] == SCHEMA
    assert "[turn 1] Ana: I moved to Lyon last month." in request["messages"][1]["content"]


def test_broken_json_is_repaired_once_then_succeeds(tmp_path: Path, llm: FakeOpenAI) -> None:
    llm.script = [Reply(content='{"facts": [{"turn": 1, '), Reply(content=json.dumps(GOOD))]
    with open_memory(tmp_path, llm) as mem:
        report = mem.add(messages=TALK, session_id="s").report
    assert report is not None and report.repairs == 1 and report.extracted == 2 and report.fallback == 0 and report.failed == []
    repair = llm.requests[1]["body"]["messages"]
    assert repair[2] == {"role": "assistant", "content": '{"facts": [{"turn": 1, '}
    assert "invalid" in repair[3]["content"] and "not JSON" in repair[3]["content"]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"facts": [{"turn": "1", "content": "x y z", "kind": "fact", "tags": []}]}, "schema: facts.0.turn"),
        ({"facts": [{"turn": 1, "content": "Ana likes tea", "kind": "opinion", "tags": []}]}, "schema: facts.0.kind"),
        ({"facts": [{"turn": 1, "content": "Ana likes tea", "kind": "fact", "tags": "tea"}]}, "schema: facts.0.tags"),
        ({"facts": "none"}, "schema: facts"),
        ({"items": []}, "schema: facts"),
        ({"facts": [{"turn": 1, "content": "Ana", "kind": "fact", "tags": [], "extra": 1}]}, "schema: facts.0"),
    ],
)
def test_wrong_types_fall_back_to_offline_and_are_counted(tmp_path: Path, llm: FakeOpenAI, bad: dict[str, Any], reason: str) -> None:
    llm.default = lambda body: Reply(content=json.dumps(bad))
    with open_memory(tmp_path, llm) as mem:
        result = mem.add(messages=TALK, session_id="s", namespace="p")
        report = result.report
        assert report is not None
        assert turns_stored(mem, "p/s") == 3
        assert report.fallback == 3 and report.repairs == 1
        assert len(report.failed) == 2 and all(f.reason.startswith(reason) for f in report.failed), report.failed
        assert all(f.turns == [1, 2, 3] for f in report.failed)
        contents = {mem.get(i).content for i in report.fact_ids}
        assert contents == {"Ana moved to Lyon last month.", "Ana loves green tea."}  # the offline extractor's facts
    assert len(llm.requests) == 2


def test_timeouts_fall_back_without_a_repair(tmp_path: Path, llm: FakeOpenAI) -> None:
    llm.default = lambda body: Reply(content=json.dumps(GOOD), delay_s=1.0)
    with open_memory(tmp_path, llm) as mem:
        report = mem.add(messages=TALK, session_id="s", namespace="p").report
        assert turns_stored(mem, "p/s") == 3
    assert report is not None and report.fallback == 3 and report.repairs == 0 and report.extracted == 2
    assert len(report.failed) == 1 and "no answer within 0.5s" in report.failed[0].reason
    assert len(llm.requests) == 2  # one try and one retry, then the offline extractor


def test_429s_are_retried_then_counted(tmp_path: Path, llm: FakeOpenAI) -> None:
    llm.default = lambda body: Reply(status=429, raw="{}", headers={"Retry-After": "0"})
    with open_memory(tmp_path, llm) as mem:
        report = mem.add(messages=TALK, session_id="s", namespace="p").report
        assert turns_stored(mem, "p/s") == 3
    assert report is not None and report.fallback == 3 and "HTTP 429" in report.failed[0].reason
    llm.requests.clear()
    llm.script = [Reply(status=429, raw="{}", headers={"Retry-After": "0"}), Reply(content=json.dumps(GOOD))]
    llm.default = lambda body: Reply(content=json.dumps(GOOD))
    (tmp_path / "again").mkdir()
    with open_memory(tmp_path / "again", llm) as mem:
        report = mem.add(messages=TALK, session_id="s2").report
    assert report is not None and report.fallback == 0 and report.failed == [] and report.extracted == 2


def test_batches_fail_independently(tmp_path: Path, llm: FakeOpenAI) -> None:
    llm.script = [
        Reply(content=json.dumps({"facts": [{"turn": 1, "content": "Ana moved to Lyon.", "kind": "episode", "tags": []}]})),
        Reply(content="garbage"),
        Reply(content="still garbage"),
    ]
    with open_memory(tmp_path, llm, batch_turns=2) as mem:
        report = mem.add(messages=TALK, session_id="s", namespace="p").report
        assert turns_stored(mem, "p/s") == 3
    assert report is not None
    assert report.fallback == 1 and report.repairs == 1 and len(report.failed) == 2
    assert all(f.turns == [3] for f in report.failed)
    assert report.extracted == 2  # the LLM's fact from batch 1, the offline fact of turn 3


def test_a_fact_naming_a_turn_outside_the_batch_is_dropped_and_counted(tmp_path: Path, llm: FakeOpenAI) -> None:
    stray = {"facts": [{"turn": 9, "content": "Invented fact here.", "kind": "fact", "tags": []}]}
    llm.script = [Reply(content=json.dumps(stray))]
    with open_memory(tmp_path, llm) as mem:
        report = mem.add(messages=TALK, session_id="s").report
    assert report is not None and report.extracted == 0 and report.fallback == 0
    assert [f.reason for f in report.failed] == ["fact names turn 9, not in the batch: dropped"]


def test_mode_offline_never_calls_the_llm(tmp_path: Path, llm: FakeOpenAI) -> None:
    with open_memory(tmp_path, llm, mode="offline") as mem:
        report = mem.add(messages=TALK, session_id="s").report
    assert report is not None and report.mode == "offline" and report.extracted == 2 and llm.requests == []


def test_mode_llm_without_a_server_is_a_config_error(tmp_path: Path) -> None:
    from memmesh.errors import InvalidInputError

    with Memory(f"sqlite:///{tmp_path / 'x.db'}", keyword_settings(tmp_path, extraction={"mode": "llm"})) as mem:
        with pytest.raises(InvalidInputError, match="no \\[llm\\] base_url"):
            mem.add(messages=TALK)
        assert mem.stats().total == 0
