"""Every MCP tool over the real stdio transport, its effect checked through the Python API.

One spawned server per test keeps the suite fast (each spawn imports the SDK); the
scenario walks the whole surface in order, and the last assertion checks that every tool
of the full profile was really called.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema
import pytest

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.errors import NotFoundError
from memmesh.interfaces.mcp.catalog import ALL_TOOLS, FAMILIES
from memmesh.model import LOCAL_PRINCIPAL

if TYPE_CHECKING:
    from conftest import Client, McpEnv

LONG = "The deployment runbook: " + "step " * 300


def open_memory(env: McpEnv) -> Memory:
    """The same database file through the embedded Python API (another interface, another process)."""
    settings = load_settings(
        None, overrides={"data_dir": str(env.tmp / "py"), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""}
    )
    return Memory(f"sqlite:///{env.db}", settings)


class Recorder:
    """Wraps a client to remember which tools a test called."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.called: set[str] = set()

    async def ok(self, name: str, /, **arguments: object) -> object:
        self.called.add(name)
        return await self.client.ok(name, **arguments)


def test_default_profile_is_core_with_valid_schemas(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client() as client:
            tools = (await client.session.list_tools()).tools
            assert [t.name for t in tools] == list(FAMILIES["core"])
            for t in tools:
                jsonschema.Draft202012Validator.check_schema(t.input_schema)
                assert t.description and t.annotations is not None
            caps = await client.ok("memory_capabilities")
            enabled = {f["name"] for f in caps["families"] if f["enabled"]}
            assert enabled == {"core"}
            assert caps["recall"]["semantic"]["status"] == "not available"
            assert caps["federation"]["status"] == "not available"

    asyncio.run(scenario())


def test_full_profile_lists_every_tool_with_hints(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client("--profile", "full") as client:
            tools = {t.name: t for t in (await client.session.list_tools()).tools}
            assert set(tools) == set(ALL_TOOLS) and len(tools) >= 36
            for t in tools.values():
                jsonschema.Draft202012Validator.check_schema(t.input_schema)
                assert t.input_schema["type"] == "object"
                assert len(t.description or "") > 40, t.name
            assert tools["memory_search"].annotations.read_only_hint is True
            assert tools["memory_delete"].annotations.destructive_hint is True
            assert tools["memory_archive_purge"].annotations.destructive_hint is True
            assert tools["memory_store"].annotations.read_only_hint is False
            assert "required" not in tools["memory_store"].input_schema  # content, or messages (a conversation)

    asyncio.run(scenario())


async def bus_and_session_tools(c: Recorder, mem: Memory) -> None:
    """The bus and session families, each checked through the Python API (issue 17)."""
    conv = await c.ok("bus_open_conversation", participants=["coord", "shard"])
    cid, token = conv["conversation_id"], conv["token"]
    sent = await c.ok("bus_send_message", conversation_id=cid, token=token, sender="coord", body="start shard 1")
    seen = mem.service.bus.unread(cid, agent="shard", token=token, principal=LOCAL_PRINCIPAL).messages
    assert [m.id for m in seen] == [sent["id"]]
    unread = await c.ok("bus_get_unread_messages", conversation_id=cid, token=token, agent="shard")
    assert [m["body"] for m in unread["messages"]] == ["start shard 1"]
    transcript = await c.ok("bus_get_transcript", conversation_id=cid, token=token)
    assert [m["body"] for m in transcript["messages"]] == ["start shard 1"] and transcript["messages"][0]["hlc"]
    assert (await c.ok("bus_ack", conversation_id=cid, token=token, agent="shard", all=True))["acked_seq"] == 1
    assert mem.service.bus.unread(cid, agent="shard", token=token, principal=LOCAL_PRINCIPAL).messages == []
    assert cid in [x["id"] for x in (await c.ok("bus_list_conversations"))["conversations"]]
    refused = await c.client.call("bus_get_unread_messages", conversation_id=cid, token="0" * 64, agent="shard")
    assert refused.is_error and "with this token" in refused.text and token not in refused.text
    queue = await c.ok("bus_open_conversation", participants=["coord", "shard"], kind="queue")
    mem.service.bus.send(queue["conversation_id"], "job", sender="coord", token=queue["token"], principal=LOCAL_PRINCIPAL)
    got = (await c.ok("bus_claim_task", conversation_id=queue["conversation_id"], token=queue["token"], worker="shard"))["delivery"]
    done = await c.ok(
        "bus_complete_task",
        conversation_id=queue["conversation_id"],
        token=queue["token"],
        worker="shard",
        attempt_token=got["attempt_token"],
        result="ok",
    )
    assert done["state"] == "done" and done.get("next") is None
    # claim_next: the ack and the worker's next task in one call
    mem.service.bus.send(queue["conversation_id"], "job 2", sender="coord", token=queue["token"], principal=LOCAL_PRINCIPAL)
    mem.service.bus.send(queue["conversation_id"], "job 3", sender="coord", token=queue["token"], principal=LOCAL_PRINCIPAL)
    two = (await c.ok("bus_claim_task", conversation_id=queue["conversation_id"], token=queue["token"], worker="shard"))["delivery"]
    both = await c.ok(
        "bus_complete_task",
        conversation_id=queue["conversation_id"],
        token=queue["token"],
        worker="shard",
        attempt_token=two["attempt_token"],
        claim_next=True,
        lease_seconds=30,
    )
    assert both["state"] == "done" and both["next"]["message"]["body"] == "job 3" and both["next"]["worker"] == "shard"
    stale = await c.client.call(
        "bus_complete_task",
        conversation_id=queue["conversation_id"],
        token=queue["token"],
        worker="shard",
        attempt_token=two["attempt_token"],
        claim_next=True,
    )
    assert stale.is_error and "no longer holds" in stale.text
    assert mem.service.bus.tasks(queue["conversation_id"], token=queue["token"], principal=LOCAL_PRINCIPAL)[0].result == "ok"
    # batches: several tasks leased in one claim, completed in one write (each entry fenced alone)
    qid, qtoken = queue["conversation_id"], queue["token"]
    mem.service.bus.send_many(qid, ["job 4", "job 5"], sender="coord", token=qtoken, principal=LOCAL_PRINCIPAL)
    many = (await c.ok("bus_claim_task", conversation_id=qid, token=qtoken, worker="shard", limit=5))["deliveries"]
    assert [d["message"]["body"] for d in many] == ["job 4", "job 5"]  # job 3 is still leased (claim_next above)
    results = [{"attempt_token": d["attempt_token"], "result": d["message"]["body"]} for d in many]
    batch = await c.ok("bus_complete_tasks", conversation_id=qid, token=qtoken, worker="shard", results=results)
    assert (batch["completed"], batch["refused"]) == (2, 0) and [o["task"]["result"] for o in batch["outcomes"]] == ["job 4", "job 5"]
    turn = await c.ok("session_append", session_id="mcp-s", content="we chose plan B", role="user")
    assert turn["turn"] == 1 and mem.service.sessions.turns("mcp-s", principal=LOCAL_PRINCIPAL)[0].content == "we chose plan B"
    back = await c.ok("session_rehydrate", session_id="mcp-s", budget_tokens=100)
    assert back["recent"][0]["content"] == "we chose plan B" and back["tokens_used"] <= 100
    assert [s["session_id"] for s in (await c.ok("session_list"))["sessions"]] == ["mcp-s"]
    await c.ok("session_append", session_id="mcp-s", content="team x picked plan C", namespace="team-x")  # another session
    picked = await c.ok("session_rehydrate", session_id="mcp-s", namespace="team-x", budget_tokens=100)
    assert picked["namespace"] == "team-x/mcp-s" and [t["content"] for t in picked["recent"]] == ["team x picked plan C"]
    talk = [{"role": "user", "name": "Ana", "content": "I love green tea."}]
    remembered = await c.ok("memory_store", messages=talk, session_id="mcp-r", namespace="people/ana")
    assert remembered["status"] == "queued" and mem.get(remembered["turns"][0]["memory_id"]).namespace == "people/ana/mcp-r"
    job = await c.ok("memory_extraction_status", job_id=remembered["job_id"])
    for _ in range(500):
        if job["status"] == "done":
            break
        await asyncio.sleep(0.02)
        job = await c.ok("memory_extraction_status", job_id=remembered["job_id"])
    assert job["status"] == "done" and mem.get(job["report"]["fact_ids"][0]).content == "Ana loves green tea."


def test_every_tool_has_its_effect(mcp_env: McpEnv) -> None:
    mem = open_memory(mcp_env)

    async def scenario() -> set[str]:
        async with mcp_env.client("--profile", "full", "--agent-id", "bot-7") as raw:
            c = Recorder(raw)
            # core: store (deduplicated), recall, search, list, get, update
            a = await c.ok(
                "memory_store",
                content="Alice deploys with the blue-green runbook",
                namespace="team/alpha",
                tags=["Deploy"],
                title="deploys",
                priority=7,
            )
            assert mem.get(a["id"]).agent_id == "bot-7" and mem.get(a["id"]).tags == ["deploy"]
            again = await c.ok("memory_store", content="Alice deploys with the blue-green runbook", namespace="team/alpha")
            assert again["id"] == a["id"]
            b = await c.ok("memory_store", content=LONG, namespace="team/alpha", kind="procedure")
            cc = await c.ok("memory_store", content="The runbook lives in the ops wiki", namespace="team/beta")
            recalled = await c.ok("memory_recall", query="runbook deploys", namespace="team")
            assert a["id"] in [h["id"] for h in recalled["hits"]]
            assert mem.get(a["id"]).access_count >= 1
            uses = mem.get(cc["id"]).access_count
            searched = await c.ok("memory_search", query="wiki")
            assert [h["id"] for h in searched["hits"]] == [cc["id"]]
            assert mem.get(cc["id"]).access_count == uses
            listed = await c.ok("memory_list", namespace="team/alpha", limit=1)
            assert len(listed["items"]) == 1 and listed["next_cursor"]
            page2 = await c.ok("memory_list", namespace="team/alpha", limit=1, cursor=listed["next_cursor"])
            assert {listed["items"][0]["id"], page2["items"][0]["id"]} == {a["id"], b["id"]}
            long_item = next(i for i in [*listed["items"], *page2["items"]] if i["id"] == b["id"])
            assert "[truncated: " in long_item["content"] and len(long_item["content"]) < len(LONG)
            full = await c.ok("memory_get", id=b["id"])
            assert full["content"] == LONG
            await c.ok("memory_update", id=a["id"], priority=9, tags=["deploy", "blue-green"])
            assert mem.get(a["id"]).priority == 9

            # graph: link, links, neighbourhood, paths, invalidation as of a time, timeline, taxonomy
            await c.ok("memory_link", source_id=a["id"], target_id=b["id"], relation="derived_from")
            await c.ok("memory_link", source_id=b["id"], target_id=cc["id"], relation="part_of")
            assert [lk.relation.value for lk in mem.links(a["id"])] == ["derived_from"]
            links = await c.ok("memory_get_links", id=b["id"])
            assert len(links) == 2
            hood = await c.ok("memory_kg_query", id=a["id"], depth=2)
            assert {n["memory"]["id"]: n["depth"] for n in hood["nodes"]} == {b["id"]: 1, cc["id"]: 2}
            paths = await c.ok("memory_find_paths", source_id=a["id"], target_id=cc["id"])
            assert paths[0]["ids"] == [a["id"], b["id"], cc["id"]]
            before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
            ended = await c.ok("memory_kg_invalidate", source_id=b["id"], target_id=cc["id"], relation="part_of")
            assert ended["valid_until"]
            assert next(lk for lk in mem.links(cc["id"])).valid_until is not None
            now_hood = await c.ok("memory_kg_query", id=a["id"], depth=2)
            assert [n["memory"]["id"] for n in now_hood["nodes"]] == [b["id"]]
            then_hood = await c.ok("memory_kg_query", id=a["id"], depth=2, as_of=before)
            assert {n["memory"]["id"] for n in then_hood["nodes"]} == {b["id"], cc["id"]}
            timeline = await c.ok("memory_kg_timeline", id=b["id"])
            assert sorted(e["current"] for e in timeline) == [False, True]
            tree = await c.ok("memory_get_taxonomy")
            team = next(n for n in tree if n["name"] == "team")
            assert team["total"] == 3
            assert {ch["path"]: ch["count"] for ch in team["children"]} == {"team/alpha": 2, "team/beta": 1}

            # entities
            ent = await c.ok("memory_entity_register", name="Alice Smith", aliases=["Alice", "A.S."], namespace="people")
            assert mem.get(ent["id"]).metadata["entity"] == "Alice Smith"
            found = await c.ok("memory_entity_get_by_alias", alias="  ALICE ")
            assert [e["id"] for e in found] == [ent["id"]]

            # lifecycle: promote, history, delete + restore, forget (dry run first), consolidate
            await c.ok("memory_promote", id=cc["id"])
            assert mem.get(cc["id"]).tier.value == "long" and mem.get(cc["id"]).expires_at is None
            events = [e["event"] for e in await c.ok("memory_history", id=a["id"])]
            assert events == ["add", "update"]
            await c.ok("memory_delete", id=b["id"])
            with pytest.raises(NotFoundError):
                mem.get(b["id"])
            await c.ok("memory_restore", id=b["id"])
            assert mem.get(b["id"]).content == LONG
            for i in range(3):
                await c.ok("memory_store", content=f"scratch note {i}", namespace="scratch")
            preview = await c.ok("memory_forget", namespace="scratch", dry_run=True)
            assert preview["matched"] == 3 and preview["deleted"] == 0 and len(mem.get_all(namespace="scratch")) == 3
            gone = await c.ok("memory_forget", namespace="scratch")
            assert gone["deleted"] == 3 and mem.get_all(namespace="scratch") == []
            x = await c.ok("memory_store", content="Bob likes tea", namespace="people/bob")
            y = await c.ok("memory_store", content="Bob drinks green tea daily", namespace="people/bob")
            summary = await c.ok("memory_consolidate", ids=[x["id"], y["id"]], content="Bob drinks green tea every day")
            assert mem.get(summary["id"]).metadata["consolidated_from"] == [x["id"], y["id"]]
            assert [m.id for m in mem.get_all(namespace="people/bob")] == [summary["id"]]

            # gc and the archive
            d = await c.ok("memory_store", content="temporary thought one", namespace="tmp", ttl_seconds=1)
            e = await c.ok("memory_store", content="temporary thought two", namespace="tmp", ttl_seconds=1)
            await asyncio.sleep(1.2)
            report = await c.ok("memory_gc")
            assert report["archived"] == 2
            stats = await c.ok("memory_archive_stats")
            assert stats["total"] == 2
            archived = await c.ok("memory_archive_list", namespace="tmp")
            assert {r["memory"]["id"] for r in archived} == {d["id"], e["id"]}
            await c.ok("memory_archive_restore", id=d["id"])
            assert mem.get(d["id"]).content == "temporary thought one"
            purged = await c.ok("memory_archive_purge", namespace="tmp")
            assert purged == {"purged": 1}
            assert mem.service.lifecycle.archive_stats(principal=LOCAL_PRINCIPAL).total == 0

            # agents, session, duplicates
            await c.ok("memory_agent_register", agent_id="helper", role="reader", namespaces=["team/*"])
            assert [ag.agent_id for ag in mem.service.agents(principal=LOCAL_PRINCIPAL)] == ["helper"]
            assert [ag["agent_id"] for ag in await c.ok("memory_agent_list")] == ["helper"]
            brief = await c.ok("memory_session_start", task="how do we deploy?", namespace="team")
            assert a["id"] in [h["id"] for h in brief["relevant"]] and brief["recent"]
            dup = await c.ok("memory_check_duplicate", content="Alice deploys with the blue-green runbook", namespace="team/alpha")
            assert dup["is_duplicate"] and dup["exact"]["id"] == a["id"]
            fresh = await c.ok("memory_check_duplicate", content="Quantum chromodynamics lecture notes", namespace="team/alpha")
            assert fresh["is_duplicate"] is False

            # ops: stats, quota, health, capabilities, export/import
            st = await c.ok("memory_stats")
            assert st["total"] == mem.stats().total
            quota = await c.ok("memory_quota_status")
            assert quota["day"] and quota["max_content_bytes"] == 65536
            backup = await c.ok("memory_backup", retain=1)
            assert backup["manifest"]["memories"] == mem.stats().total
            assert (mcp_env.tmp / "data" / "backups").exists()
            health = await c.ok("memory_health")
            assert health["status"] == "ok" and health["components"]["store"]["schema_version"] >= 3
            components = {"store", "writes", "vector_index", "embedder", "peers", "outbox", "workers", "bus", "audit"}
            assert set(health["components"]) == components
            assert "keyword-only" in health["components"]["embedder"]["reason"]
            caps = await c.ok("memory_capabilities")
            assert all(f["enabled"] for f in caps["families"])
            inline = await c.ok("memory_export", namespace="team/beta")
            assert inline["jsonl"].count('"type": "memory"') == 1
            out = mcp_env.tmp / "export.jsonl"
            exported = await c.ok("memory_export", path=str(out))
            assert out.exists() and exported["lines"] == len(out.read_text().splitlines())
            mem.delete(cc["id"])
            dry = await c.ok("memory_import", path=str(out), dry_run=True)
            assert dry["dry_run"] and dry["memories_written"] == 1
            with pytest.raises(NotFoundError):
                mem.get(cc["id"])
            done = await c.ok("memory_import", path=str(out))
            assert done["memories_written"] == 1 and mem.get(cc["id"]).content == "The runbook lives in the ops wiki"
            again_import = await c.ok("memory_import", jsonl=inline["jsonl"])
            assert again_import["memories_written"] == 0
            await bus_and_session_tools(c, mem)

            # governance: a standard queues writes; the queue is listed, approved and rejected
            std = await c.ok("memory_namespace_set_standard", namespace="team/legal", governance={"write": "approve"})
            assert std["governance"] == {"write": "approve"}
            view = await c.ok("memory_namespace_get_standard", namespace="team/legal/nda")
            assert view["governance"]["write"] == {"value": "approve", "set_on": "team/legal"}
            queued = await c.client.call("memory_store", content="NDA template v2", namespace="team/legal/nda")
            assert not queued.is_error and queued.text.startswith("pending: ") and queued.structured["status"] == "pending"
            pending_id = queued.structured["pending_id"]
            assert [p["id"] for p in await c.ok("memory_pending_list")] == [pending_id]
            assert mem.get_all(namespace="team/legal") == []
            approved = await c.ok("memory_pending_approve", id=pending_id, reason="reviewed")
            assert approved["status"] == "applied" and mem.get(approved["result"]["memory_ids"][0]).agent_id == "bot-7"
            queued_again = await c.client.call("memory_store", content="NDA template v3", namespace="team/legal/nda")
            rejected = await c.ok("memory_pending_reject", id=queued_again.structured["pending_id"], reason="duplicate")
            assert rejected["status"] == "rejected" and rejected["reason"] == "duplicate"
            assert [m.content for m in mem.get_all(namespace="team/legal")] == ["NDA template v2"]
            await c.ok("memory_namespace_set_standard", namespace="team/legal", governance={"delete": "deny"})
            denied = await c.client.call("memory_delete", id=approved["result"]["memory_ids"][0])
            assert denied.is_error and denied.structured["error"]["details"]["rule"]["set_on"] == "team/legal"
            assert denied.text.startswith("error: delete in namespace 'team/legal/nda' is denied")
            cleared = await c.ok("memory_namespace_clear_standard", namespace="team/legal")
            assert cleared["namespace"] == "team/legal"
            # subscriptions and inbox (issue 16): a public URL is accepted, a loopback one refused
            sub = await c.ok("memory_subscribe", namespace="team/alpha", url="http://8.8.8.8/hook", events=["memory.deleted"])
            assert len(sub["secret"]) == 64 and [s["id"] for s in await c.ok("memory_list_subscriptions")] == [sub["id"]]
            refused = await c.client.call("memory_subscribe", namespace="team/alpha", url="http://127.0.0.1:9/hook")
            assert refused.is_error and "loopback" in refused.text
            assert (await c.ok("memory_unsubscribe", id=sub["id"]))["id"] == sub["id"]
            assert await c.ok("memory_list_subscriptions") == []
            sent = await c.ok("memory_notify", to="bot-7", body="the runbook moved", namespace="team/alpha")
            assert sent["sender"] == "bot-7"
            assert [m["body"] for m in await c.ok("memory_inbox")] == ["the runbook moved"]
            assert await c.ok("memory_inbox") == []

            # curator: a contradiction found, keywords as tags, a query widened by the store's words
            low = await c.ok("memory_store", content="The API rate limit is 100 requests per minute", namespace="team/limits")
            high = await c.ok("memory_store", content="The API rate limit is 500 requests per minute", namespace="team/limits")
            found = await c.ok("memory_detect_contradiction", id=low["id"])
            assert [h["memory"]["id"] for h in found["contradictions"]] == [high["id"]]
            tagged = await c.ok("memory_auto_tag", id=low["id"], apply=True)
            assert tagged["applied"] and mem.get(low["id"]).tags == tagged["tags"] != []
            wider = await c.ok("memory_expand_query", query="rate limit", namespace="team/limits")
            assert wider["expansions"] and wider["expanded_query"].startswith("rate limit ")
            return c.called

    try:
        called = asyncio.run(scenario())
    finally:
        mem.close()
    assert called >= set(ALL_TOOLS), sorted(set(ALL_TOOLS) - called)


def test_config_file_profile_and_env_agent_id(mcp_env: McpEnv, tmp_path: Path) -> None:
    config = tmp_path / "memmesh.toml"
    config.write_text('[mcp]\nprofile = "graph"\nagent_id = "from-file"\n')
    mem = open_memory(mcp_env)

    async def scenario() -> None:
        async with mcp_env.client(extra_env={"MEMMESH_CONFIG": str(config), "MEMMESH_MCP_AGENT_ID": "from-env"}) as client:
            names = [t.name for t in (await client.session.list_tools()).tools]
            assert names == [*FAMILIES["core"], *FAMILIES["graph"], *FAMILIES["entities"]]
            stored = await client.ok("memory_store", content="configured by file and env")
            assert mem.get(stored["id"]).agent_id == "from-env"

    try:
        asyncio.run(scenario())
    finally:
        mem.close()
