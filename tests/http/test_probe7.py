"""Probe of the HTTP surfaces merged in session 6: the bus transcript and the sync push of
the new item kinds, attacked through a real uvicorn."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from http_support import server_env


def _open(http: Any, **body: Any) -> tuple[str, dict[str, str]]:
    reply = http.post("/api/v1/bus/conversations", json={"participants": ["a", "b"], **body})
    assert reply.status_code == 201, reply.text
    return reply.json()["conversation_id"], {"X-Bus-Token": reply.json()["token"]}


def test_transcript_refuses_other_conversations_tokens_marks_and_bad_limits(server: Any) -> None:
    http = server.http()
    one, one_auth = _open(http)
    two, two_auth = _open(http)
    ids = []
    for body in ("first", "second", "third"):
        sent = http.post(f"/api/v1/bus/conversations/{one}/messages", json={"from": "a", "body": body}, headers=one_auth)
        assert sent.status_code == 201, sent.text
        ids.append(sent.json()["id"])
    other = http.post(f"/api/v1/bus/conversations/{two}/messages", json={"from": "b", "body": "elsewhere"}, headers=two_auth).json()["id"]
    url = f"/api/v1/bus/conversations/{one}/messages"
    page = http.get(url, params={"limit": 2}, headers=one_auth).json()
    assert [m["body"] for m in page["messages"]] == ["first", "second"] and page["more"] is True
    rest = http.get(url, params={"after": ids[1]}, headers=one_auth).json()
    assert [m["body"] for m in rest["messages"]] == ["third"] and rest["more"] is False
    checks = [
        (http.get(url, headers=two_auth), 404, "with this token"),  # another conversation's token
        (http.get(url), 422, "X-Bus-Token"),
        (http.get(url, params={"after": other}, headers=one_auth), 422, "no message"),  # a mark from another conversation
        (http.get(url, params={"after": "nope"}, headers=one_auth), 422, "no message"),
        (http.get(url, params={"limit": 0}, headers=one_auth), 422, "limit"),
        (http.get(url, params={"limit": -5}, headers=one_auth), 422, "limit"),
        (http.get(url, params={"limit": 10**12}, headers=one_auth), 422, "limit"),
        (http.get(url, params={"limit": "many"}, headers=one_auth), 422, "limit"),
        (http.get("/api/v1/bus/conversations/nope/messages", headers=one_auth), 404, "no conversation"),
    ]
    for reply, status, words in checks:
        assert reply.status_code == status, (status, reply.text)
        error = reply.json()["error"]
        assert words in error["message"] or words in str(error["details"]), reply.text
        assert "elsewhere" not in reply.text


def test_serve_survives_its_first_recall_on_a_store_past_the_hnsw_threshold(tmp_path: Path, spawn: Any) -> None:
    """``serve`` loads the saved HNSW graph (usearch) at start-up, before the embedder's first
    use imports onnxruntime; in that order the import killed the server (SIGSEGV) at its
    first recall or write. Real subprocesses: a crash must not take the test runner along."""
    db = tmp_path / "big.db"
    env = {**server_env(tmp_path), "MEMMESH_EMBEDDINGS_PROVIDER": "minilm", "MEMMESH_RECALL_ANN_THRESHOLD": "1"}
    cli = [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(db)]
    for text in ("Alice moved to Berlin last spring", "Bob drinks his coffee black", "The quarterly report is due Friday"):
        subprocess.run([*cli, "store", text], env=env, check=True, capture_output=True, timeout=300)
    found = subprocess.run([*cli, "recall", "where does Alice live?"], env=env, check=True, capture_output=True, text=True, timeout=300)
    assert "Alice" in found.stdout
    assert list(tmp_path.glob("big.db.hnsw-*.usearch")), "the CLI saved the graph the server will load"
    for _ in range(2):  # the saved graph is loaded at start-up, then the first embedding
        server = spawn(db, env=env)
        reply = httpx.post(server.url + "/api/v1/recall", json={"query": "where does Alice live?"}, timeout=120)
        assert reply.status_code == 200, reply.text
        assert reply.json()["hits"][0]["memory"]["content"] == "Alice moved to Berlin last spring"
        stored = httpx.post(server.url + "/api/v1/memories", json={"content": f"Carol plays cello {_}"}, timeout=120)
        assert stored.status_code == 201, stored.text
        assert server.proc.poll() is None, server.log.read_text()[-2000:]
        assert server.terminate() in (0, -signal.SIGTERM)
