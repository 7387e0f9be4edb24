"""What a new user, an attacker with keys scoped elsewhere and an SRE tried against a real
uvicorn in session 6, and found broken: each test fails on the code before its fix.

Every refusal must be a clear 4xx naming what to fix, store nothing, and leave the route
working afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from memmesh.model import LOCAL_PRINCIPAL


def _refused(reply: httpx.Response, status: int, *words: str) -> None:
    assert reply.status_code == status, reply.text
    message = reply.json()["error"]["message"]
    for word in words:
        assert word in message, reply.text


def _key(server: Any, agent: str, role: str, namespaces: list[str] | None = None) -> httpx.Client:
    made = server.service.create_key(agent, role=role, namespaces=namespaces, principal=LOCAL_PRINCIPAL)
    return server.http(made.key)


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("line\nbreak", "U+000A"),  # forges a second line in `memmesh list` and logs
        ("\x1b[31mred", "U+001B"),  # a terminal escape sequence
        ("admin\u202egnp", "U+202E"),  # bidi override: shows as another tag
        ("zero\u200bwidth", "U+200B"),  # looks identical to "zerowidth", never matches it
        ("para\u2029graph", "U+2029"),
    ],
)
def test_a_tag_with_control_or_invisible_characters_is_refused_on_every_write(serve: Any, tag: str, code: str) -> None:
    # Before: namespaces refused these characters but tags stored them as given (201).
    server = serve()
    http = _key(server, "alice", "writer", ["a"])
    _refused(
        http.post("/api/v1/memories", json={"content": "tagged fact", "namespace": "a", "tags": [tag]}),
        422,
        code,
        "tags are one-line labels",
    )
    _refused(
        http.post("/api/v1/memories/batch", json={"items": [{"content": "batch fact", "namespace": "a", "tags": ["ok", tag]}]}), 422, code
    )
    stored = http.post("/api/v1/memories", json={"content": "plain fact", "namespace": "a", "tags": ["ok"]})
    assert stored.status_code == 201, stored.text
    _refused(http.patch(f"/api/v1/memories/{stored.json()['id']}", json={"tags": [tag]}), 422, code)
    page = http.get("/api/v1/memories", params={"namespace": "a"}).json()
    assert [(m["content"], m["tags"]) for m in page["items"]] == [("plain fact", ["ok"])], "nothing refused was stored or changed"


def test_tags_that_need_joiners_and_other_scripts_are_still_accepted(serve: Any) -> None:
    server = serve()
    http = _key(server, "alice", "writer", ["a"])
    tags = ["family\U0001f468\u200d\U0001f469\u200d\U0001f467", "क्\u200dष", "café", "日本語", "smith, john"]
    stored = http.post("/api/v1/memories", json={"content": "a fact with rich tags", "namespace": "a", "tags": tags})
    assert stored.status_code == 201, stored.text
    assert stored.json()["tags"] == tags


def test_sync_hello_is_refused_to_an_admin_limited_to_some_namespaces(serve: Any) -> None:
    # Before: any admin got 200 with `seq`, the store-wide change counter: a key for `a`
    # polling it learned how much was written in namespaces it may not read.
    server = serve()
    scoped = _key(server, "a-admin", "admin", ["a"])
    _refused(scoped.get("/api/v1/sync/hello"), 403, "every namespace")
    for agent, role in [("global-admin", "admin"), ("node-b", "peer")]:
        hello = _key(server, agent, role).get("/api/v1/sync/hello")
        assert hello.status_code == 200, hello.text
        assert hello.json()["node"] == server.service.node_id


def test_a_peer_key_limited_to_some_namespaces_cannot_be_made_nor_read_the_change_counter(serve: Any) -> None:
    # Before: `keys create --role peer -n a` (by any admin of `a`) made a key every sync route
    # refused ("a peer key replicates every namespace") except hello, which gave it `seq`, the
    # store-wide change counter the scoped admin above is refused.
    server = serve()
    admin = _key(server, "root", "admin")
    scoped_admin = _key(server, "a-admin", "admin", ["a"])
    for http, namespaces in [(admin, ["a"]), (scoped_admin, ["a"]), (admin, ["a/*", "b"])]:
        _refused(http.post("/api/v1/keys", json={"agent_id": "node-x", "role": "peer", "namespaces": namespaces}), 422, "every namespace")
    assert not [k for k in server.service.keys(include_revoked=True, principal=LOCAL_PRINCIPAL) if k.role == "peer"]
    made = admin.post("/api/v1/keys", json={"agent_id": "node-y", "role": "peer", "namespaces": ["*"]})
    assert made.status_code == 201, made.text
    # a scoped peer key made before this rule still exists in old stores: hello refuses it too
    from memmesh.access import generate_key, hash_secret
    from memmesh.model import StoredApiKey

    key_id, secret, text = generate_key()
    now, digest = server.service.clock(), hash_secret(secret)
    old = StoredApiKey(id=key_id, agent_id="node-z", role="peer", namespaces=["a"], created_at=now, key_hash=digest)
    with server.service.store.write() as tx:
        tx.insert_api_key(old)
    _refused(server.http(text).get("/api/v1/sync/hello"), 403, "every namespace")
    assert server.http(made.json()["key"]).get("/api/v1/sync/hello").status_code == 200


def test_a_url_encoded_line_break_or_escape_cannot_forge_a_server_log_line(spawn: Any, tmp_path: Path) -> None:
    # Before: the access log wrote the percent-decoded path as is, so `%0A` in a URL started a
    # line of the attacker's choosing in the server log and `%1B` sent terminal escapes.
    server = spawn(tmp_path / "logs.db")
    forged = "2026-01-01 00:00:00,000 INFO memmesh.http.access [x] POST /api/v1/keys 201 1.0ms"
    for path in [
        "/api/v1/memories/abc%0A" + forged.replace(" ", "%20"),
        "/api/v1/memories/abc%1B%5B31mRED",
        "/api/v1/memories/abc%E2%80%AE",
    ]:
        assert httpx.get(server.url + path).status_code == 404
    assert httpx.get(server.url + "/api/v1/memories/caf%C3%A9").status_code == 404
    server.terminate()
    lines = server.log.read_text(encoding="utf-8").splitlines()
    assert not any(line.startswith("2026-01-01") for line in lines), "no line starts with the forged text"
    access = [line for line in lines if "memmesh.http.access" in line and "/api/v1/memories/" in line]
    assert len(access) == 4, lines
    assert "abc\\n2026-01-01" in access[0] and "POST /api/v1/keys 201" in access[0], "the forged text stays inside its own line"
    assert "\x1b" not in "".join(lines) and "abc\\x1b[31mRED" in access[1]
    assert "abc\\u202e" in access[2] and "café" in access[3], "printable text of any script is kept as it is"


def test_storing_what_an_approved_write_already_stored_answers_existed_instead_of_queueing_again(serve: Any) -> None:
    # Before: under `governance.write = approve`, storing content that is already stored
    # queued a new pending action every time (202), even for a client retrying to confirm
    # a write that had been approved meanwhile; approvers got a queue of no-op writes.
    server = serve()
    admin, writer = _key(server, "boss", "admin"), _key(server, "alice", "writer", ["a"])
    assert admin.put("/api/v1/namespaces/a/standard", json={"governance": {"write": "approve"}}).status_code == 200
    body = {"content": "Deploys need two reviewers", "namespace": "a", "tags": ["policy"]}
    queued = writer.post("/api/v1/memories", json=body)
    assert queued.status_code == 202, queued.text
    approved = admin.post(f"/api/v1/pending/{queued.json()['pending_id']}/approve", json={})
    assert approved.status_code == 200 and approved.json()["status"] == "applied", approved.text

    again = writer.post("/api/v1/memories", json=body)
    assert again.status_code == 200 and again.json()["existed"] is True, again.text
    fewer_tags = writer.post("/api/v1/memories", json={**body, "tags": []})
    assert fewer_tags.status_code == 200 and fewer_tags.json()["id"] == again.json()["id"], fewer_tags.text
    assert writer.get("/api/v1/pending", params={"status": "pending"}).json() == [], "nothing new waits for approval"

    more_tags = writer.post("/api/v1/memories", json={**body, "tags": ["policy", "new"]})
    assert more_tags.status_code == 202, "a store that would add a tag still changes the memory: it waits"
    fresh = writer.post("/api/v1/memories", json={**body, "content": "Deploys need three reviewers"})
    assert fresh.status_code == 202, fresh.text
    page = admin.get("/api/v1/memories", params={"namespace": "a"}).json()
    assert [(m["content"], m["tags"]) for m in page["items"]] == [("Deploys need two reviewers", ["policy"])]
