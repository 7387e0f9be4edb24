"""Bus conversations and messages replicate across the mesh (issues 15 and 17), on real nodes.

A chat posted on one node is read on the others; every node shows a conversation in one
order, (hlc, node, id), even for posts made on both sides of a partition; a message that
arrives late (after a heal) is still delivered and no read cursor moves back; a node that was
down catches up; replaying a batch changes nothing; malformed or inconsistent bus items are
refused (422) with the store unchanged.
"""

from __future__ import annotations

import copy
import itertools
import threading
from pathlib import Path
from typing import Any

import httpx
from tests.federation.mesh_support import Node, mesh, proxied_mesh, wait_for

PARTICIPANTS = ["planner", "coder", "tester"]


def open_chat(node: Node) -> tuple[str, dict[str, str]]:
    response = node.call("POST", "/api/v1/bus/conversations", json={"participants": PARTICIPANTS, "topic": "release"})
    assert response.status_code == 201, response.text
    opened = response.json()
    return opened["conversation_id"], {"X-Bus-Token": opened["token"]}


def send(node: Node, conv: str, token: dict[str, str], sender: str, body: str) -> dict[str, Any]:
    response = node.call("POST", f"/api/v1/bus/conversations/{conv}/messages", json={"from": sender, "body": body}, headers=token)
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


def transcript(node: Node, conv: str, token: dict[str, str]) -> list[dict[str, Any]]:
    """Every message of ``conv`` on ``node``, in mesh order, through all pages (3 at a time:
    the paging itself is part of what must agree)."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        response = node.call("GET", f"/api/v1/bus/conversations/{conv}/messages", params=params, headers=token)
        response.raise_for_status()
        page = response.json()
        out += page["messages"]
        if not page["more"]:
            return out
        params["after"] = out[-1]["id"]


def order(node: Node, conv: str, token: dict[str, str]) -> list[tuple[str, str, str]]:
    return [(m["id"], m["node"], m["hlc"]) for m in transcript(node, conv, token)]


def unread(node: Node, conv: str, token: dict[str, str], agent: str) -> dict[str, Any]:
    response = node.call("GET", f"/api/v1/bus/conversations/{conv}/unread", params={"agent": agent}, headers=token)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def ack_all(node: Node, conv: str, token: dict[str, str], agent: str) -> dict[str, Any]:
    response = node.call("POST", f"/api/v1/bus/conversations/{conv}/ack", json={"agent": agent, "all": True}, headers=token)
    assert response.status_code == 200, response.text
    acked: dict[str, Any] = response.json()
    return acked


def holds(node: Node, conv: str, token: dict[str, str], count: int) -> bool:
    response = node.call("GET", f"/api/v1/bus/conversations/{conv}/messages", params={"limit": 1000}, headers=token)
    return response.status_code == 200 and len(response.json()["messages"]) == count


def stop(nodes: list[Node]) -> None:
    for node in nodes:
        node.stop()


def test_concurrent_posts_on_every_node_read_everywhere_in_one_order(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 3)
    a, b, c = nodes
    try:
        conv, token = open_chat(a)
        wait_for(lambda: all(holds(n, conv, token, 0) for n in nodes), 30, "the conversation on every node")
        # the token works on every node (it replicates only as its hash); a wrong one does not
        wrong = {"X-Bus-Token": "0" * 64}
        assert b.call("GET", f"/api/v1/bus/conversations/{conv}/messages", headers=wrong).status_code == 404
        assert c.call("GET", f"/api/v1/bus/conversations/{conv}/unread", params={"agent": "coder"}, headers=wrong).status_code == 404

        def post(node: Node, sender: str) -> None:
            for i in range(8):
                send(node, conv, token, sender, f"{sender} on {node.name}: step {i}")

        threads = [threading.Thread(target=post, args=(n, s)) for n, s in zip(nodes, ["planner", "coder", "planner"], strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_for(lambda: all(holds(n, conv, token, 24) for n in nodes), 60, "all 24 messages on every node")
        orders = [order(n, conv, token) for n in nodes]
        assert orders[0] == orders[1] == orders[2]
        assert orders[0] == sorted(orders[0], key=lambda m: (m[2], m[1], m[0]))  # (hlc, node, id)
        assert {m[1] for m in orders[0]} == {"node-a", "node-b", "node-c"}
        # each node's own posts keep their send order in the mesh order
        for n in nodes:
            mine = [m for m in transcript(a, conv, token) if m["node"] == n.name]
            assert [m["body"] for m in mine] == sorted((m["body"] for m in mine), key=lambda t: int(t.rsplit(" ", 1)[1]))

        # every reader on every node gets each message once (none is its own: tester sent nothing)
        for n in nodes:
            got = unread(n, conv, token, "tester")
            assert len(got["messages"]) == 24 and len({m["id"] for m in got["messages"]}) == 24
            assert ack_all(n, conv, token, "tester")["acked"] == 24
            assert unread(n, conv, token, "tester")["messages"] == []
    finally:
        stop(nodes)


def test_a_message_from_the_other_side_of_a_partition_is_delivered_late_and_no_cursor_moves_back(tmp_path: Path) -> None:
    nodes, proxies = proxied_mesh(tmp_path, 3)
    a, b, c = nodes
    try:
        conv, token = open_chat(a)
        first = send(a, conv, token, "planner", "before the split")
        wait_for(lambda: all(holds(n, conv, token, 1) for n in nodes), 30, "the first message everywhere")

        for (src, dst), proxy in proxies.items():
            if "node-c" in (src, dst):
                proxy.cut()
        early = send(a, conv, token, "planner", "written on the majority side first")
        late_here = send(c, conv, token, "tester", "written on the cut-off node afterwards")
        wait_for(lambda: holds(b, conv, token, 2), 30, "the majority side agrees")

        # on the cut-off node, coder reads and acks everything it holds
        seen = unread(c, conv, token, "coder")
        assert [m["id"] for m in seen["messages"]] == [first["id"], late_here["id"]]
        cursor = ack_all(c, conv, token, "coder")["acked_seq"]
        assert cursor == 2 and unread(c, conv, token, "coder")["messages"] == []

        for proxy in proxies.values():
            proxy.heal()
        wait_for(lambda: all(holds(n, conv, token, 3) for n in nodes), 60, "every message everywhere after the heal")

        # the majority's message is older than the one coder acked on c, yet it is delivered
        after = unread(c, conv, token, "coder")
        assert [m["id"] for m in after["messages"]] == [early["id"]]
        assert after["acked_seq"] == cursor  # the cursor did not move back
        assert after["messages"][0]["seq"] > cursor  # numbered on arrival here
        assert ack_all(c, conv, token, "coder")["acked_seq"] == 3
        # and every node shows one transcript, ordered by when each was written (its HLC)
        orders = [[m[0] for m in order(n, conv, token)] for n in nodes]
        assert orders[0] == orders[1] == orders[2] == [first["id"], early["id"], late_here["id"]]
    finally:
        stop(nodes)
        for proxy in proxies.values():
            proxy.close()


def test_a_node_that_was_down_catches_up_on_the_bus(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2)
    a, b = nodes
    try:
        conv, token = open_chat(a)
        wait_for(lambda: holds(b, conv, token, 0), 30, "b holds the conversation")
        polled: list[httpx.Response] = []
        poll = threading.Thread(
            target=lambda: polled.append(
                b.call("GET", f"/api/v1/bus/conversations/{conv}/unread", params={"agent": "coder", "wait": 30}, headers=token, timeout=60)
            )
        )
        poll.start()
        send(a, conv, token, "planner", "while both run")
        poll.join(60)
        # a long-poll on b wakes for a message posted on a (well before its 30 s timeout)
        assert [m["body"] for m in polled[0].json()["messages"]] == ["while both run"]
        assert polled[0].elapsed.total_seconds() < 20
        b.stop()
        sent = [send(a, conv, token, "planner", f"while b is down {i}")["id"] for i in range(30)]
        other, other_token = open_chat(a)  # a conversation b has never seen
        send(a, other, other_token, "coder", "in a new conversation")
        b.start()
        wait_for(lambda: holds(b, conv, token, 31) and holds(b, other, other_token, 1), 60, "b caught up")
        assert order(a, conv, token) == order(b, conv, token)
        assert [m["id"] for m in unread(b, conv, token, "coder")["messages"]][1:] == sent
    finally:
        stop(nodes)


def test_bus_items_replayed_change_nothing_and_bad_ones_are_refused_whole(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2)
    a, b = nodes
    try:
        conv, token = open_chat(a)
        for i in range(3):
            send(a, conv, token, "planner", f"note {i}")
        queue = a.call("POST", "/api/v1/bus/conversations", json={"participants": PARTICIPANTS, "kind": "queue"}).json()
        a.call(
            "POST",
            f"/api/v1/bus/conversations/{queue['id']}/messages",
            json={"from": "planner", "body": "a task"},
            headers={"X-Bus-Token": queue["token"]},
        )
        wait_for(lambda: holds(b, conv, token, 3), 30, "b holds the chat")
        page = a.call("GET", "/api/v1/sync/since", params={"peer": "node-b", "since": 0}).json()
        bus = [item for item in page["items"] if item.get("bus")]
        assert len(bus) == 4  # the chat and its messages; the task queue stays on its node
        assert all((item["bus"].get("conversation") or {}).get("kind", "chat") == "chat" for item in bus)
        assert token["X-Bus-Token"] not in str(page)  # the token travels only as its hash
        before = order(b, conv, token)

        def push(items: list[dict[str, Any]]) -> httpx.Response:
            return b.call("POST", "/api/v1/sync/push", json={"node": "node-a", "items": items})

        # replays: the page itself, and its items as a push outside the feed
        replay = b.call("POST", "/api/v1/sync/push", json={k: v for k, v in page.items() if k != "more"})
        assert replay.status_code == 200 and replay.json()["applied"] == 0
        again = push([{**item, "seq": 0} for item in bus])
        assert again.status_code == 200, again.text
        assert again.json()["applied"] == 0 and again.json()["duplicates"] == 4
        assert order(b, conv, token) == before

        message = next(item for item in bus if item["bus"].get("message"))
        conversation = next(item for item in bus if item["bus"].get("conversation"))

        ids = itertools.count()

        def with_message(**changes: Any) -> dict[str, Any]:
            item = copy.deepcopy(message)
            item["seq"] = 0
            item["bus"]["message"].update({"id": f"forged-{next(ids)}", **changes})
            return item

        def with_conversation(**changes: Any) -> dict[str, Any]:
            item = copy.deepcopy(conversation)
            item["seq"] = 0
            item["bus"]["conversation"].update({"id": "forged-conversation", **changes})
            return item

        good = with_message(body="a valid new message riding with a bad one")
        good["bus"]["message"]["id"] = "good-new-message"
        bad_batches = {
            "sender not a participant": [good, with_message(sender="mallory")],
            "recipient not a participant": [good, with_message(recipient="mallory")],
            "unknown conversation": [good, with_message(conversation_id="no-such-conversation")],
            "empty body": [good, with_message(body="   ")],
            "over this node's size limit": [good, with_message(body="x" * 70_000)],
            "NUL in the body": [good, with_message(body="a\x00b")],
            "no hlc": [good, with_message(hlc=None)],
            "malformed hlc": [good, with_message(hlc="yesterday")],
            "clock far in the future": [good, with_message(hlc="9999999999999.00000")],
            "bad origin": [good, with_message(origin="no spaces allowed")],
            "a task queue": [good, with_conversation(kind="queue")],
            "a token in clear": [good, with_conversation(token_hash=token["X-Bus-Token"] + "00")],
            "no participants": [good, with_conversation(participants=[])],
            "an id clash": [good, with_conversation(id=conv, token_hash="1" * 64)],
            "both at once": [good, {"seq": 0, "bus": {**message["bus"], "conversation": conversation["bus"]["conversation"]}}],
            "neither": [good, {"seq": 0, "bus": {}}],
            "unknown field": [good, {"seq": 0, "bus": {"message": {**message["bus"]["message"], "lease_token": "x"}}}],
        }
        head = b.status()["change_counter"]
        for what, items in bad_batches.items():
            response = push(items)
            assert response.status_code == 422, (what, response.status_code, response.text)
            assert response.json()["error"]["message"], what
        assert order(b, conv, token) == before  # the good message rode in refused batches: not stored
        assert b.status()["change_counter"] == head
        assert b.call("GET", "/api/v1/bus/conversations", params={"limit": 1000}).json()["conversations"][0]["id"] == conv
        # the same good message alone is taken
        assert push([good]).json()["applied"] == 1
        after = [m[0] for m in order(b, conv, token)]
        assert "good-new-message" in after and len(after) == len(before) + 1
    finally:
        stop(nodes)
