"""Probe of the HTTP surfaces merged in session 6: the bus transcript and the sync push of
the new item kinds, attacked through a real uvicorn."""

from __future__ import annotations

from typing import Any


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
