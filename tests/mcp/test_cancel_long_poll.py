"""An MCP client that cancels a long-poll frees its slot at once (real stdio server, real client).

The SDK runs a plain tool function on a worker thread and, on ``notifications/cancelled``,
still waits for that thread: a cancelled ``bus_get_unread_messages`` kept waiting out its
``wait_seconds``, holding one of ``bus.max_long_polls`` slots (and a thread) for nobody. With
one slot, every later long-poll was refused until then. HTTP ends such a wait when its client
disconnects; MCP now ends it when the request is cancelled.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

if TYPE_CHECKING:
    from conftest import McpEnv


def test_a_cancelled_long_poll_frees_its_slot_at_once(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client("--profile", "full", extra_env={"MEMMESH_BUS_MAX_LONG_POLLS": "1"}) as client:
            opened = await client.ok("bus_open_conversation", participants=["planner", "coder"])
            ask = {"conversation_id": opened["conversation_id"], "token": opened["token"], "agent": "coder"}
            with anyio.move_on_after(1.0) as waited:  # the client gives up: the SDK sends notifications/cancelled
                await client.call("bus_get_unread_messages", **ask, wait_seconds=60)
            assert waited.cancelled_caught, "the long-poll answered before the client gave up"
            started = time.monotonic()
            while True:  # the one slot is free again within moments, not after the 60 s wait
                found = await client.call("bus_get_unread_messages", **ask, wait_seconds=0.2)
                if not found.is_error:
                    break
                assert "long-polls already wait" in found.text, found.text
                # within moments, not at the 60 s wait's end (5 s was close to a loaded machine's slack)
                assert time.monotonic() - started < 30, "the cancelled long-poll still holds its slot"
                await anyio.sleep(0.1)
            assert found.data == {"messages": [], "acked_seq": 0, "more": False}  # nothing unread: an empty list, said so

    asyncio.run(scenario())


def test_bus_claim_task_waits_for_a_task_and_a_cancelled_claim_takes_none(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client("--profile", "full", extra_env={"MEMMESH_BUS_MAX_LONG_POLLS": "1"}) as client:
            q = await client.ok("bus_open_conversation", participants=["boss", "worker"], kind="queue")
            where = {"conversation_id": q["conversation_id"], "token": q["token"]}
            with anyio.move_on_after(1.0) as waited:  # cancelled while waiting: takes nothing, frees the slot
                await client.call("bus_claim_task", **where, worker="worker", wait_seconds=60)
            assert waited.cancelled_caught
            claimed: list[object] = []

            async def claim() -> None:
                started = time.monotonic()
                while True:  # (a moment may pass before the cancelled wait has let go of the one slot)
                    found = await client.call("bus_claim_task", **where, worker="worker", wait_seconds=60)
                    if not found.is_error:
                        claimed.append(found.data)
                        return
                    assert "long-polls already wait" in found.text and time.monotonic() - started < 30, found.text
                    await anyio.sleep(0.1)

            async with anyio.create_task_group() as group:
                group.start_soon(claim)
                await anyio.sleep(1.5)  # the claim is waiting now
                sent = time.monotonic()
                await client.ok("bus_send_message", **where, sender="boss", body="build the index")
            assert time.monotonic() - sent < 30, "the waiting claim answered when the task came, not at its 60 s timeout"
            delivery = claimed[0]["delivery"]  # type: ignore[index]
            assert delivery["message"]["body"] == "build the index" and delivery["attempt"] == 1

    asyncio.run(scenario())


def test_a_claim_cancelled_while_it_waited_for_the_database_takes_no_task(mcp_env: McpEnv) -> None:
    """The client cancels while the claim's first try waits for the write lock (another
    process writing): once the lock comes free the claim runs, but the tasks it leased go
    back to the queue at once instead of staying leased to nobody until their leases run out."""
    import sqlite3

    async def scenario() -> None:
        async with mcp_env.client("--profile", "full", extra_env={"MEMMESH_STORAGE_BUSY_TIMEOUT_MS": "20000"}) as client:
            q = await client.ok("bus_open_conversation", participants=["boss", "worker"], kind="queue")
            where = {"conversation_id": q["conversation_id"], "token": q["token"]}
            for n in range(3):
                await client.ok("bus_send_message", **where, sender="boss", body=f"task {n}")
            blocker = sqlite3.connect(str(mcp_env.db), timeout=30)
            blocker.execute("BEGIN IMMEDIATE")  # another process's write holds the lock for a moment
            try:
                for _ in range(3):
                    with anyio.move_on_after(0.3) as waited:
                        await client.call("bus_claim_task", **where, worker="worker", wait_seconds=30)
                    assert waited.cancelled_caught
            finally:
                blocker.rollback()
                blocker.close()
            await anyio.sleep(1.0)  # the cancelled claims' threads run once the lock is free
            started = time.monotonic()
            while True:  # (read from the file: no MCP tool lists a queue's tasks)
                with sqlite3.connect(str(mcp_env.db)) as look:
                    states = dict(
                        look.execute(
                            "SELECT state, count(*) FROM bus_messages WHERE conversation_id = ? GROUP BY state", (where["conversation_id"],)
                        ).fetchall()
                    )
                if states.get("ready") == 3 or time.monotonic() - started > 5:
                    break
                await anyio.sleep(0.2)
            assert states == {"ready": 3}, f"cancelled claims kept tasks leased to nobody: {states}"
            found = await client.ok("bus_claim_task", **where, worker="worker", limit=3)
            assert [d["message"]["body"] for d in found["deliveries"]] == ["task 0", "task 1", "task 2"]

    asyncio.run(scenario())


def _children_named(word: str) -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                command = Path(f"/proc/{entry}/cmdline").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me and word in command:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts the server's threads in /proc")
def test_cancelled_waiting_calls_stay_within_the_worker_thread_limit(mcp_env: McpEnv) -> None:
    """A cancelled waiting call keeps its worker thread counted until the thread ends: a
    client cancelling calls whose threads are blocked (here on another process's write lock)
    cannot pile up threads past the SDK's limit of 40 (with abandon_on_cancel it reached one
    thread per call)."""
    import sqlite3

    async def scenario() -> None:
        async with mcp_env.client("--profile", "full", extra_env={"MEMMESH_STORAGE_BUSY_TIMEOUT_MS": "20000"}) as client:
            q = await client.ok("bus_open_conversation", participants=["boss", "worker"], kind="queue")
            where = {"conversation_id": q["conversation_id"], "token": q["token"]}
            (server,) = _children_named("mcp")
            blocker = sqlite3.connect(str(mcp_env.db), timeout=30)
            blocker.execute("BEGIN IMMEDIATE")
            try:
                for _ in range(80):
                    with anyio.move_on_after(0.02):
                        await client.call("bus_claim_task", **where, worker="worker", wait_seconds=5)
                await anyio.sleep(0.5)
                threads = len(os.listdir(f"/proc/{server}/task"))
            finally:
                blocker.rollback()
                blocker.close()
            assert threads <= 50, f"{threads} threads in the server after 80 cancelled claims"

    asyncio.run(scenario())


def test_a_waiting_tool_sees_the_request_s_caller_and_raises_its_own_errors() -> None:
    """The waiting wrapper runs the tool in the request's context (its principal) and lets an
    unexpected error out as itself, not wrapped in an ExceptionGroup."""
    from memmesh.interfaces.mcp.server import _guarded
    from memmesh.interfaces.mcp.tools import current_abandoned, current_principal

    def boom() -> None:
        raise RuntimeError("the tool failed")

    def who() -> dict[str, object]:
        return {"principal": current_principal.get(), "flag": current_abandoned.get() is not None}

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="the tool failed"):
            await _guarded(boom, waits=True)()
        current_principal.set("the caller")  # type: ignore[arg-type]
        found = await _guarded(who, waits=True)()
        assert found.structured_content == {"principal": "the caller", "flag": True} or '"the caller"' in found.content[0].text

    anyio.run(scenario)
