"""Run by tests/test_probe7_cli.py with PYTHONPATH at the sources of main 73ea171 (schema 19):
makes a store with standards, pending actions, a bus chat and queue, and a held curator lease."""

from __future__ import annotations

import json
import sys
import time

from memmesh.errors import PendingApprovalError
from memmesh.memory import Memory
from memmesh.model import LOCAL_PRINCIPAL as P

db = sys.argv[1]
m = Memory(f"sqlite:///{db}")
s = m.service
out: dict[str, object] = {}
s.governance.set_standard("legal", governance={"write": "approve"}, required_tags=["contract"], principal=P)
s.governance.set_standard("ops", governance={"delete": "deny"}, ttl_seconds=3600, principal=P)
s.governance.set_standard("tmp", governance={"write": "deny"}, principal=P)
s.governance.clear_standard("tmp", principal=P)
ids: list[str] = []
for text in ("The supplier contract renews in March.", "The NDA with Acme ends in June."):
    try:
        s.add({"content": text, "namespace": "legal", "tags": ["contract"]}, principal=P)
    except PendingApprovalError as e:
        ids.append(e.details["pending_id"])
decided = s.governance.approve(ids[0], principal=P)
out["pending_open"], out["pending_applied"], out["applied_memory"] = ids[1], ids[0], decided.result["memory_ids"][0]
a = s.add({"content": "Alice moved to Berlin", "namespace": "people"}, principal=P)
b = s.add({"content": "Alice lives in Berlin now", "namespace": "people"}, principal=P)
s.link(a.id, b.id, "related_to", principal=P)
chat = s.bus.open(["alice", "bob"], principal=P, topic="launch")
for who, body in (("alice", "hello bob"), ("bob", "hi alice"), ("alice", "ship it?")):
    s.bus.send(chat.id, body, sender=who, token=chat.token, principal=P)
q = s.bus.open(["w1"], principal=P, kind="queue")
out["chat"], out["chat_token"], out["queue"] = chat.id, chat.token, q.id
# a curator lease held (a run in flight at upgrade time)
assert s.curator.db.acquire("old-process-1234", time.time(), 3600) is None
out["memories"] = sorted(x.id for x in s.store.iter_memories())
m.close()
print(json.dumps(out))
