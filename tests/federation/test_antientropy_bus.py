"""Bus chat conversations and messages, and registered agents, are in the anti-entropy digest:
a node that lost a message, a whole conversation or an agent behind the feed (a restored
backup, a bad disk) differs in the ``#bus`` / ``#agents`` digests, and `cluster repair` brings
them back through the ordinary apply path, messages in their conversation's mesh order. Real
``memmesh serve`` nodes on SQLite files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.federation.mesh_support import mesh, wait_for
from tests.federation.test_anti_entropy import cli, digests
from tests.federation.test_replicate_bus import open_chat, order, send


def test_bus_messages_a_conversation_and_an_agent_lost_behind_the_feed_are_repaired(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2, names=("node-a", "node-b"))
    a, b = nodes
    try:
        kept, kept_token = open_chat(a)
        sent = [send(a, kept, kept_token, "planner", f"step {i}") for i in range(3)]
        lost, lost_token = open_chat(a)
        send(a, lost, lost_token, "coder", "this whole chat goes missing on b")
        for agent in ("reviewer", "scribe"):
            made = a.call("POST", "/api/v1/agents", json={"agent_id": agent, "role": "writer", "namespaces": [f"team/{agent}"]})
            assert made.status_code == 201, made.text
        wait_for(lambda: digests(a)["digest"] == digests(b)["digest"], 60, "b caught up with a")
        assert {n["namespace"]: n["rows"] for n in digests(a)["namespaces"]} == {"#agents": 2, "#bus": 6}  # 2 chats, 4 messages
        expected = order(a, kept, kept_token)
        assert order(b, kept, kept_token) == expected

        b.stop()
        conn = sqlite3.connect(Path(str(b.db)))
        with conn:
            assert conn.execute("DELETE FROM bus_messages WHERE id = ?", (sent[1]["id"],)).rowcount == 1
            assert conn.execute("DELETE FROM bus_messages WHERE conversation_id = ?", (lost,)).rowcount == 1
            assert conn.execute("DELETE FROM bus_conversations WHERE id = ?", (lost,)).rowcount == 1
            assert conn.execute("DELETE FROM agents WHERE agent_id = 'scribe'").rowcount == 1
        conn.close()
        before = cli(tmp_path, b.db, "cluster", "verify", "--peers", a.url, "--json")
        assert before.returncode == 1 and json.loads(before.stdout)["differing"] == ["#agents", "#bus"], before.stdout + before.stderr

        done = cli(tmp_path, b.db, "cluster", "repair", "--peers", a.url, "--json")
        assert done.returncode == 0, done.stderr + done.stdout
        (report,) = json.loads(done.stdout)
        # four rows differed (a message; a conversation and its message; an agent), four objects taken in
        assert report["memories"] == 4 and report["applied_here"] == 4 and report["applied_there"] == 0, report
        assert report["rows_exchanged"] <= 100, report

        b.start()
        assert digests(a)["digest"] == digests(b)["digest"]
        assert order(b, kept, kept_token) == expected  # the repaired message sits in its mesh place
        assert [m[0] for m in order(b, lost, lost_token)] == [m[0] for m in order(a, lost, lost_token)]
        agents = b.call("GET", "/api/v1/agents").json()
        assert {x["agent_id"]: x["namespaces"] for x in agents} == {"reviewer": ["team/reviewer"], "scribe": ["team/scribe"]}
        again = cli(tmp_path, b.db, "cluster", "repair", "--peers", a.url, "--json")
        (second,) = json.loads(again.stdout)
        assert second["memories"] == 0 and second["namespaces_differing"] == [], second
    finally:
        for node in nodes:
            node.stop()
