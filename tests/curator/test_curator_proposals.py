"""The curator as one more writer under the core's rules (issue 16): a change an ``approve``
standard holds back is queued once and a rejected one is not proposed again; its writes
count against ``limits.daily_write_quota`` like anyone's; and the MCP contradiction tool
gives the verdicts the curator acts on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import FakeClock, keyword_settings
from tests.mcp.conftest import McpEnv, mcp_env  # noqa: F401 - the MCP server fixture

from memmesh import Memory
from memmesh.errors import RateLimitedError


def _contradicting_pair(mem: Memory) -> tuple[str, str]:
    """Two tagged memories that contradict (so the curator proposes one link, no tags)."""
    a = mem.add("The API rate limit is 100 requests per minute.", namespace="ops", tags=["api", "limits"]).id
    b = mem.add("The API rate limit is 500 requests per minute.", namespace="ops", tags=["api", "limits"]).id
    return a, b


def test_an_approve_rule_queues_each_change_once_and_a_rejected_one_is_not_proposed_again(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'm.db'}", keyword_settings(tmp_path)) as mem:
        a, b = _contradicting_pair(mem)
        mem.set_standard("ops", governance={"link": "approve"})

        first = mem.curate()
        queued = mem.pending()
        assert len(queued) == 1 and queued[0].action == "link", queued
        assert {queued[0].payload["source_id"], queued[0].payload["target_id"]} == {a, b}
        assert any("awaits approval" in e for e in first.autonomy.errors)

        second = mem.curate()
        assert [p.id for p in mem.pending()] == [queued[0].id]  # the same change: still one pending action
        assert any(f"still awaits approval as pending action {queued[0].id}" in e for e in second.autonomy.errors)

        mem.reject(queued[0].id, reason="these are two different APIs")
        third = mem.curate()
        assert mem.pending() == [] and len(mem.pending(status="all")) == 1  # nothing proposed again
        assert third.operations_skipped_rejected == 1 and third.autonomy.errors == []
        assert mem.get(a).id and not [lk for lk in mem.links(a) if lk.relation.value == "contradicts"]

        # the memory changes: the curator sees a new pair and may propose it again (once)
        mem.update(b, content="The API rate limit is 800 requests per minute.")
        mem.curate()
        mem.curate()
        again = mem.pending()
        assert len(again) == 1 and again[0].id != queued[0].id, again
        mem.approve(again[0].id)
        assert [lk.relation.value for lk in mem.links(a)] == ["contradicts"]
        last = mem.curate()
        assert mem.pending() == [] and last.operations_skipped_rejected == 0 and last.contradictions_found == 0


def test_auto_tags_held_for_approval_are_queued_once_per_memory_as_the_namespace_grows(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'm.db'}", keyword_settings(tmp_path)) as mem:
        first = [
            mem.add(text, namespace="wiki").id
            for text in ("Grace leads the design system working group.", "The billing service retries failed invoices nightly.")
        ]
        mem.set_standard("wiki", governance={"update": "approve"})
        mem.curate()
        assert sorted(p.payload["memory_id"] for p in mem.pending()) == sorted(first)
        # a new memory changes every word's weight (so the tags suggested), not what is proposed
        later = [
            mem.add(text, namespace="wiki").id
            for text in ("The design system working group meets on Fridays.", "Grace reviews the billing design.")
        ]
        mem.curate()
        mem.curate()
        assert sorted(p.payload["memory_id"] for p in mem.pending()) == sorted([*first, *later])


def test_curator_writes_count_against_the_daily_write_quota(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = keyword_settings(tmp_path, limits={"daily_write_quota": 4})
    with Memory(f"sqlite:///{tmp_path / 'm.db'}", settings, clock=clock) as mem:
        texts = [
            "Grace leads the design system working group.",
            "The billing service retries failed invoices nightly.",
            "Deploys to staging need a green build first.",
            "The support rota changes every Monday morning.",
        ]
        ids = [mem.add(t, namespace="team/a" if i % 2 else "team/b").id for i, t in enumerate(texts)]
        with pytest.raises(RateLimitedError):
            mem.add("One more today.", namespace="team")
        clock.advance(days=1)
        ids.append(mem.add("The office closes early on Fridays.", namespace="team").id)  # 1 of 4 used today

        planned = mem.curate(dry_run=True)
        assert planned.auto_tagged == 5 and planned.operations_attempted == 5  # five tag updates wanted

        report = mem.curate()  # a run at the quota: three fit, two are skipped, nothing crashes
        assert report.operations_attempted == 3 and report.auto_tagged == 3
        assert report.operations_skipped_quota == 2
        assert any("namespace 'team'" in e and "limits.daily_write_quota" in e for e in report.autonomy.errors), report.autonomy.errors
        used = {q.namespace: q.written_today for q in mem.service.survey.quota_status(principal=mem.principal).namespaces}
        assert used["team"] == 4
        with pytest.raises(RateLimitedError):
            mem.add("Still over the quota.", namespace="team/a")
        assert sum(1 for i in ids if mem.get(i).tags) == 3

        clock.advance(days=1)  # the next day the rest is done
        rest = mem.curate()
        assert rest.auto_tagged == 2 and rest.operations_skipped_quota == 0
        assert all(mem.get(i).tags for i in ids)


PAIRS = [
    # (older, newer, the curator's verdict for the pair)
    ("The API rate limit is 100 requests per minute.", "The API rate limit is 500 requests per minute.", "contradicts"),
    ("Ana loves green tea.", "Ana hates green tea.", "contradicts"),
    ("The deploy job runs on Fridays.", "The deploy job does not run on Fridays.", "contradicts"),
    ("Ana drinks coffee every morning.", "Ana doesn't drink coffee every morning anymore.", "supersedes"),
    ("Ana lives in Paris.", "Ana moved to Berlin last year.", "supersedes"),
    ("The staging server runs in Lyon.", "The build cache lives on the NAS.", None),
]


def test_the_mcp_contradiction_tool_agrees_with_the_curator(tmp_path: Path, db_path: Path, mcp_env: McpEnv) -> None:  # noqa: F811
    stored: list[tuple[str, str, str]] = []
    with Memory(f"sqlite:///{db_path}", keyword_settings(tmp_path)) as mem:
        for n, (older, newer, _) in enumerate(PAIRS):  # the newer one is stored later (the MCP server's clock is real)
            old_id = mem.add(older, namespace=f"pair{n}", tags=["x"]).id
            new_id = mem.add(newer, namespace=f"pair{n}", tags=["x"]).id
            stored.append((old_id, new_id, f"pair{n}"))
        curator: list[str | None] = []
        for old_id, new_id, ns in stored:
            report = mem.curate(dry_run=True, namespace=ns)
            if report.contradictions:
                assert {report.contradictions[0].a, report.contradictions[0].b} == {old_id, new_id}
                curator.append("contradicts")
            elif report.updates:
                assert (report.updates[0].new, report.updates[0].old) == (new_id, old_id)
                curator.append("supersedes")
            else:
                curator.append(None)
    assert curator == [verdict for _, _, verdict in PAIRS]

    async def scenario() -> list[tuple[bool, bool, bool]]:  # (empty lists are left out of a tool's JSON)
        seen = []
        async with mcp_env.client("--profile", "curator") as client:
            for (old_id, new_id, ns), (_older, newer, _) in zip(stored, PAIRS, strict=True):
                from_new = await client.ok("memory_detect_contradiction", id=new_id)
                from_old = await client.ok("memory_detect_contradiction", id=old_id)
                as_text = await client.ok("memory_detect_contradiction", content=newer + " (said again)", namespace=ns)
                seen.append(
                    (
                        [c["memory"]["id"] for c in from_new.get("contradictions", [])] == [old_id],
                        [c["memory"]["id"] for c in from_old.get("contradictions", [])] == [new_id],
                        old_id in [c["memory"]["id"] for c in as_text.get("contradictions", [])],
                    )
                )
        return seen

    tool = asyncio.run(scenario())
    for (older, newer, verdict), (new_side, old_side, text_side) in zip(PAIRS, tool, strict=True):
        flagged = verdict == "contradicts"
        assert new_side == flagged and old_side == flagged and text_side == flagged, (older, newer, verdict, new_side, old_side, text_side)


def test_proposals_and_quota_on_each_backend(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    """The pending-action lookup (a LIKE over the JSON payload) and the quota give-back (a
    count of -1) are plain SQL on both backends."""
    mem = open_memory(backend_url, limits={"daily_write_quota": 3})
    a, b = _contradicting_pair(mem)
    mem.add("The staging cluster runs three nodes.", namespace="ops")  # untagged: one tag update wanted
    mem.set_standard("ops", governance={"link": "approve"})
    first = mem.curate()
    assert first.operations_skipped_quota == 1 and first.auto_tagged == 0  # 3 of 3 used by the stores
    mem.curate()
    queued = mem.pending()
    assert len(queued) == 1 and {queued[0].payload["source_id"], queued[0].payload["target_id"]} == {a, b}
    mem.reject(queued[0].id)
    assert mem.curate().operations_skipped_rejected == 1 and mem.pending() == []
