"""Sessions on both backends: turns stored in order as kind="message" memories, and a
738-message session rehydrated within 4,000 tokens with its last turns and a fact from turn 41."""

from __future__ import annotations

import random

import pytest

from memmesh import Memory
from memmesh.errors import ForbiddenError, InvalidInputError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL, Principal
from memmesh.recall.ranking import estimate_tokens

FACT = "The Orion staging cluster rotates its database credentials every 45 days, on a Tuesday."
TOPICS = ["deploy", "invoice", "latency", "schema", "widget", "gateway", "refactor", "budget", "roadmap", "pager"]
VERBS = ["reviewed", "discussed", "measured", "fixed", "planned", "documented", "tested", "questioned"]


def synthetic_session(n: int = 738, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` turns of varied small talk about work, with FACT said once, at turn 41."""
    rng = random.Random(seed)
    turns = []
    for i in range(1, n + 1):
        role = "user" if i % 2 else "assistant"
        if i == 41:
            text = f"Noting for later: {FACT}"
        else:
            topic, verb = rng.choice(TOPICS), rng.choice(VERBS)
            text = (
                f"We {verb} the {topic} work item {rng.randint(100, 999)} today. "
                f"Next step for {rng.choice(TOPICS)} is owned by team {rng.choice('ABCDEFG')}."
            )
        turns.append((role, text))
    return turns


def test_a_738_message_session_rehydrates_within_4000_tokens(mem_on: Memory) -> None:
    sessions = mem_on.service.sessions
    turns = synthetic_session()
    for start in range(0, len(turns), 100):  # batches, as an importer would; order is kept across them
        batch = [{"role": r, "content": c} for r, c in turns[start : start + 100]]
        sessions.append_many("long-run", batch, principal=LOCAL_PRINCIPAL)
    stored = sessions.turns("long-run", principal=LOCAL_PRINCIPAL)
    assert [t.turn for t in stored] == list(range(1, 739))
    assert [(t.role, t.content) for t in stored] == turns
    page = mem_on.service.list(namespace="sessions/long-run", kind="message", limit=1000, principal=LOCAL_PRINCIPAL)
    assert len(page.items) == 738 and all(m.kind.value == "message" for m in page.items)

    got = sessions.rehydrate(
        "long-run", budget_tokens=4000, query="how often does the Orion cluster rotate credentials?", principal=LOCAL_PRINCIPAL
    )
    assert got.turns_total == 738
    assert got.tokens_used <= 4000 and estimate_tokens(got.context) == got.tokens_used
    assert got.tokens_used > 3000, "the budget should be used, not wasted"
    assert [t.turn for t in got.recent][-3:] == [736, 737, 738]
    assert [t.turn for t in got.recent] == list(range(got.recent[0].turn, 739)), "the latest turns, contiguous and in order"
    assert FACT in got.context, "the relevant fact from turn 41 is in the context"
    assert any(r.content.startswith("[turn 41]") for r in got.relevant)
    assert got.summary and all(s.turn < got.recent[0].turn for s in got.summary)
    assert [s.turn for s in got.summary] == sorted(s.turn for s in got.summary)
    assert all(any(s.text in c for _, c in turns) for s in got.summary), "extractive: every summary line is said in a turn"


def test_session_appends_keep_order_and_identical_turns(mem_on: Memory) -> None:
    sessions = mem_on.service.sessions
    for role, text in [("user", "ok"), ("assistant", "ok"), ("user", "ok")]:
        sessions.append("s-dup", role=role, content=text, principal=LOCAL_PRINCIPAL)
    assert [(t.turn, t.role, t.content) for t in sessions.turns("s-dup", principal=LOCAL_PRINCIPAL)] == [
        (1, "user", "ok"),
        (2, "assistant", "ok"),
        (3, "user", "ok"),
    ]
    listed = {s.session_id: s for s in sessions.list(principal=LOCAL_PRINCIPAL)}
    assert listed["s-dup"].turns == 3 and listed["s-dup"].namespace == "sessions/s-dup"
    small = sessions.rehydrate("s-dup", budget_tokens=50, principal=LOCAL_PRINCIPAL)
    assert small.tokens_used <= 50 and small.recent[-1].turn == 3


def test_session_bad_input_and_scope(mem_on: Memory) -> None:
    sessions = mem_on.service.sessions
    with pytest.raises(NotFoundError, match="no session"):
        sessions.rehydrate("never-started", principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError, match="session_id"):
        sessions.append("bad id!", role="user", content="x", principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError, match="role"):
        sessions.append("s1", role="Robot Overlord", content="x", principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError, match="empty content"):
        sessions.append("s1", role="user", content="  ", principal=LOCAL_PRINCIPAL)
    sessions.append("s1", role="user", content="hello", namespace="team/a", principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError, match="budget_tokens"):
        sessions.rehydrate("s1", budget_tokens=10, principal=LOCAL_PRINCIPAL)
    scoped_b = Principal(agent_id="bee", role="writer", namespaces=["team/b"])
    with pytest.raises(NotFoundError, match="no session s1"):  # team/a's s1 is not b's to read
        sessions.rehydrate("s1", principal=scoped_b)
    with pytest.raises(ForbiddenError, match="sessions/s1"):  # no root given: the default root, outside b's namespaces
        sessions.append("s1", role="user", content="intrude", principal=scoped_b)
    assert [s.session_id for s in sessions.list(principal=scoped_b)] == []
    scoped_a = Principal(agent_id="ay", role="reader", namespaces=["team/a"])
    assert [s.session_id for s in sessions.list(principal=scoped_a)] == ["s1"]
    assert sessions.rehydrate("s1", principal=scoped_a).recent[0].content == "hello"
    # nothing half-written by the refusals
    assert [t.content for t in sessions.turns("s1", principal=LOCAL_PRINCIPAL)] == ["hello"]


def test_one_session_id_under_two_roots_is_two_sessions(mem_on: Memory) -> None:
    """A session is keyed by its namespace: a tenant using an id first takes it from no one
    (no 404 for the next tenant), and nothing a tenant is told depends on whether another
    tenant holds the id. A caller that sees the id under several roots names the one it means."""
    sessions = mem_on.service.sessions
    a = Principal(agent_id="ay", role="writer", namespaces=["team/a"])
    b = Principal(agent_id="bee", role="writer", namespaces=["team/b"])
    assert sessions.append("chat-1", role="user", content="a's plan: ship friday", namespace="team/a", principal=a).turn == 1
    assert sessions.append("chat-1", role="user", content="b's plan: ship monday", namespace="team/b", principal=b).turn == 1
    assert sessions.append("chat-1", role="assistant", content="noted, monday", principal=b).turn == 2  # b sees only its own
    assert [t.content for t in sessions.turns("chat-1", principal=a)] == ["a's plan: ship friday"]
    assert [t.content for t in sessions.turns("chat-1", principal=b)] == ["b's plan: ship monday", "noted, monday"]
    assert [(s.session_id, s.namespace, s.turns) for s in sessions.list(principal=b)] == [("chat-1", "team/b/chat-1", 2)]
    # No oracle: an id a holds and an id nobody holds answer b alike.
    sessions.append("chat-2", role="user", content="only a has this", namespace="team/a", principal=a)
    answers = set()
    for sid in ("chat-2", "chat-9"):
        with pytest.raises(NotFoundError) as refused:
            sessions.rehydrate(sid, principal=b)
        answers.add(str(refused.value).replace(sid, "<id>"))
        assert sessions.append(sid, role="user", content=f"b starts {sid}", namespace="team/b", principal=b).turn == 1
    assert len(answers) == 1 and "no session <id>:" in answers.pop()
    # The local caller sees both chat-1 sessions: it must name the root, and nothing is written meanwhile.
    with pytest.raises(InvalidInputError, match=r"several roots \(team/a, team/b\): give namespace"):
        sessions.rehydrate("chat-1", principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError, match="several roots"):
        sessions.append("chat-1", role="user", content="which one?", principal=LOCAL_PRINCIPAL)
    found = sessions.rehydrate("chat-1", namespace="team/a", principal=LOCAL_PRINCIPAL)
    assert found.namespace == "team/a/chat-1" and [t.content for t in found.recent] == ["a's plan: ship friday"]
    with pytest.raises(NotFoundError, match="no session chat-1 under team/c"):
        sessions.rehydrate("chat-1", namespace="team/c", principal=LOCAL_PRINCIPAL)
    assert sessions.append("chat-1", role="user", content="local adds to b", namespace="team/b", principal=LOCAL_PRINCIPAL).turn == 3
    assert [t.turn for t in sessions.turns("chat-1", principal=b)] == [1, 2, 3]
