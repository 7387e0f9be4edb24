"""Abstractive session summaries: with ``[llm]`` set, rehydration's summary of older turns is
written by the LLM (a real local OpenAI-compatible server, tests/fake_openai.py), within the
budget; on any LLM failure it falls back to the extractive summary; appending turns never
calls the LLM; without ``[llm]`` nothing changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fake_openai import FakeOpenAI, Reply, fake_openai

from memmesh import Memory
from memmesh.config import load_settings


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server


def open_memory(tmp_path: Path, server: FakeOpenAI | None, **sessions: object) -> Memory:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data: dict[str, object] = {"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}
    if server is not None:
        data["llm"] = {"base_url": server.url, "model": "fake", "timeout_s": 2, "retries": 0}
    if sessions:
        data["sessions"] = sessions
    return Memory(f"sqlite:///{tmp_path / 's.db'}", load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""}))


def fill(mem: Memory, turns: int = 120) -> None:
    for i in range(1, turns + 1):
        fact = (
            "The staging database password rotates every Friday."
            if i == 41
            else f"Step {i} of the migration moved table t{i} to the new cluster."
        )
        mem.session_append("s1", role="user" if i % 2 else "assistant", content=fact)


def test_the_llm_writes_the_summary_within_the_budget(tmp_path: Path, llm: FakeOpenAI) -> None:
    llm.default = lambda body: Reply(
        content="Earlier, the team migrated tables t1-t80 to the new cluster; the staging password rotates on Fridays."
    )
    with open_memory(tmp_path, llm) as mem:
        fill(mem)
        assert llm.requests == [], "appending turns never calls the LLM"
        got = mem.session_rehydrate("s1", budget_tokens=800, query="when does the staging password rotate")
    assert got.summary_kind == "abstractive"
    assert [(s.role, s.text) for s in got.summary] == [("summary", llm.default({}).content)]
    assert got.tokens_used <= 800 and "the staging password rotates on Fridays" in got.context
    assert got.summary[0].turn == got.recent[0].turn - 1
    asked = llm.requests[0]["body"]["messages"]
    assert "staging database password rotates every Friday" in asked[1]["content"], "the LLM reads the extractive selection"
    assert "when does the staging password rotate" in asked[1]["content"]


def test_a_long_answer_is_cut_to_the_budget(tmp_path: Path, llm: FakeOpenAI) -> None:
    llm.default = lambda body: Reply(content="word " * 5000)
    with open_memory(tmp_path, llm) as mem:
        fill(mem)
        got = mem.session_rehydrate("s1", budget_tokens=600)
    assert got.summary_kind == "abstractive" and got.tokens_used <= 600
    assert got.summary[0].text.endswith("…")


@pytest.mark.parametrize(
    "reply",
    [Reply(status=500, raw='{"error": "boom"}'), Reply(content="   "), Reply(content="late", delay_s=3)],
    ids=["server-error", "empty-answer", "timeout"],
)
def test_any_llm_failure_falls_back_to_the_extractive_summary(tmp_path: Path, llm: FakeOpenAI, reply: Reply) -> None:
    llm.default = lambda body: reply
    with open_memory(tmp_path, llm) as mem:
        fill(mem)
        got = mem.session_rehydrate("s1", budget_tokens=800, query="staging password")
        with open_memory(tmp_path / "off", None) as plain:
            fill(plain)
            expected = plain.session_rehydrate("s1", budget_tokens=800, query="staging password")
    assert got.summary_kind == "extractive" and got.summary and all(s.role in ("user", "assistant") for s in got.summary)
    assert [s.text for s in got.summary] == [s.text for s in expected.summary]
    assert got.tokens_used <= 800


def test_without_llm_or_with_abstractive_off_the_summary_stays_extractive(tmp_path: Path, llm: FakeOpenAI) -> None:
    with open_memory(tmp_path, llm, abstractive=False) as mem:
        fill(mem, 60)
        got = mem.session_rehydrate("s1", budget_tokens=500)
    assert got.summary_kind == "extractive" and llm.requests == []
    with open_memory(tmp_path / "plain", None) as mem:
        fill(mem, 3)
        assert mem.session_rehydrate("s1", budget_tokens=4000).summary_kind == "none"  # every turn fits: nothing to summarise
