"""The curator's LLM step against a real local OpenAI-compatible server (tests/fake_openai.py):
pairs the heuristics are unsure of are confirmed by the model and linked ``contradicts``; a
broken reply is one error in the report and the run still finishes; without ``[llm]`` the
report still says ``no LLM client configured`` and nothing is asked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import keyword_settings

from fake_openai import FakeOpenAI, Reply, fake_openai
from memmesh import Memory
from memmesh.config import load_settings
from memmesh.curator import NO_LLM
from memmesh.model import Relation


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server


def open_memory(tmp_path: Path, server: FakeOpenAI | None) -> Memory:
    data: dict[str, object] = {"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}
    if server is not None:
        data["llm"] = {"base_url": server.url, "model": "fake", "timeout_s": 2, "retries": 0}
    settings = load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""})
    return Memory(f"sqlite:///{tmp_path / 'c.db'}", settings)


def seed(mem: Memory) -> dict[str, str]:
    """Two pairs on one subject that differ without a negation or a number (unsure), and a
    numeric contradiction the heuristics catch on their own."""
    return {
        "lyon": mem.add("The staging server runs in Lyon.", namespace="p").id,
        "paris": mem.add("The staging server runs in Paris.", namespace="p").id,
        "tea": mem.add("Bob's morning routine includes green tea.", namespace="p").id,
        "coffee": mem.add("Bob's morning routine includes black coffee.", namespace="p").id,
        "lim1": mem.add("The API rate limit is 100 requests per minute.", namespace="p").id,
        "lim2": mem.add("The API rate limit is 500 requests per minute.", namespace="p").id,
    }


def contradicts(mem: Memory, a: str, b: str) -> bool:
    return any(link.relation == Relation.contradicts and {link.source_id, link.target_id} == {a, b} for link in mem.links(a))


def verdict(body: dict[str, object]) -> Reply:
    """Answer like a model would: Lyon vs Paris disagree, tea vs coffee do not."""
    text = json.dumps(body["messages"])
    if "Lyon" in text:
        return Reply(content=json.dumps({"contradicts": True, "reason": "two different regions"}))
    return Reply(content=json.dumps({"contradicts": False, "reason": "a routine can include both"}))


def test_the_llm_confirms_unsure_pairs_and_they_are_linked(tmp_path: Path, llm: FakeOpenAI) -> None:
    llm.default = verdict
    with open_memory(tmp_path, llm) as mem:
        ids = seed(mem)
        report = mem.curate()
        assert report.errors == [] and report.llm_reviewed == 2 == len(llm.requests)
        assert report.contradictions_found == 2
        reasons = {frozenset((c.a, c.b)): c.reason for c in report.contradictions}
        assert reasons[frozenset((ids["lyon"], ids["paris"]))] == "LLM: two different regions"
        assert contradicts(mem, ids["lyon"], ids["paris"]) and contradicts(mem, ids["lim1"], ids["lim2"])
        assert not contradicts(mem, ids["tea"], ids["coffee"])
        # the request carries both statements and asks for the verdict's JSON schema
        body = llm.requests[0]["body"]
        assert body["response_format"]["type"] == "json_schema"
        # rollback removes the LLM-confirmed link like any other
        mem.curator_rollback(report.run_id)
        assert not contradicts(mem, ids["lyon"], ids["paris"])
        # a second run asks only about the pairs still unlinked
        again = mem.curate()
        assert again.contradictions_found == 2


def test_a_broken_reply_is_an_error_and_the_run_finishes(tmp_path: Path, llm: FakeOpenAI) -> None:
    llm.default = verdict
    with open_memory(tmp_path, llm) as mem:
        ids = seed(mem)
        # the most similar pair is asked first: script two bad answers, whichever pair gets them
        llm.script = [Reply(content="this is not json"), Reply(content=json.dumps({"contradicts": "maybe"}))]
        report = mem.curate()
        assert report.llm_reviewed == 2 and len(report.errors) == 2
        assert "not JSON" in report.errors[0] and "wrong shape" in report.errors[1]
        assert all("LLM review of" in e for e in report.errors)
        # everything else still happened: the numeric contradiction is linked, the run is recorded
        assert contradicts(mem, ids["lim1"], ids["lim2"]) and not contradicts(mem, ids["lyon"], ids["paris"])
        assert mem.curator_runs()[0].id == report.run_id
        # the next run, with the server answering, links the pair left over
        assert mem.curate().errors == [] and contradicts(mem, ids["lyon"], ids["paris"])


def test_a_server_error_is_an_error_not_a_failed_run(tmp_path: Path, llm: FakeOpenAI) -> None:
    llm.default = lambda body: Reply(status=500, raw='{"error": "boom"}')
    with open_memory(tmp_path, llm) as mem:
        ids = seed(mem)
        report = mem.curate()
        assert len(report.errors) == 2 and all("HTTP 500" in e for e in report.errors)
        assert contradicts(mem, ids["lim1"], ids["lim2"])


def test_without_llm_the_report_is_unchanged(tmp_path: Path) -> None:
    with open_memory(tmp_path, None) as mem:
        ids = seed(mem)
        report = mem.curate()
        assert report.errors == [NO_LLM] and report.llm_reviewed == 0
        assert report.contradictions_found == 1 and not contradicts(mem, ids["lyon"], ids["paris"])


def test_cli_run_with_llm_env_reports_reviews_and_broken_replies(cli: Any, db_path: Path, llm: FakeOpenAI) -> None:
    """The real ``memmesh`` CLI with ``[llm]`` set by env: the model is asked; a broken reply
    is a note, the run still exits 0 and the numeric contradiction is linked."""
    with Memory(f"sqlite:///{db_path}", keyword_settings(db_path.parent)) as mem:
        ids = seed(mem)
    llm.default = lambda body: Reply(content="not json at all")
    env = {"MEMMESH_LLM_BASE_URL": llm.url, "MEMMESH_LLM_MODEL": "fake", "MEMMESH_LLM_RETRIES": "0"}
    run = cli("curator", "run", "--json", extra_env=env)
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert report["llm_reviewed"] == 2 and len(report["errors"]) == 2 and NO_LLM not in report["errors"]
    assert all("is not JSON" in e for e in report["errors"])
    llm.default = verdict
    text = cli("curator", "run", extra_env=env)
    assert text.code == 0, text.err
    with Memory(f"sqlite:///{db_path}", keyword_settings(db_path.parent)) as mem:
        assert contradicts(mem, ids["lyon"], ids["paris"]) and contradicts(mem, ids["lim1"], ids["lim2"])
