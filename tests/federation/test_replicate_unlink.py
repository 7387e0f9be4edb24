"""Link removals replicate (issue 15, schema 20): a curator rollback removes the
``contradicts`` link it added on every node, not only where it ran; the older push that
carried the link never brings it back; linking the same memories again later (a newer link)
replicates as usual. Anti-entropy ships the removal with the memories it repairs. Both
backends (PostgreSQL from scripts/pg_test_server.py: fails, never skips)."""

from __future__ import annotations

import time

from tests.federation.test_catchup_backends import pg_url
from tests.federation.test_replicate_standards import pair, replay, sync

from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.service import Service

__all__ = ["pair", "pg_url"]


def links(service: Service) -> list[tuple[str, str, str, str]]:
    return sorted(
        {
            (k.source_id, k.target_id, k.relation.value, k.created_at.isoformat())
            for m in service.store.iter_memories()
            for k in service.store.links(m.id)
        }
    )


def test_a_rolled_back_link_is_removed_on_the_peer_and_not_revived_by_an_older_push(pair: tuple[Service, Service]) -> None:
    a, b = pair
    a.add({"content": "The API rate limit is 100 requests per minute.", "namespace": "ops", "tier": "long"}, principal=P)
    a.add({"content": "The API rate limit is 500 requests per minute.", "namespace": "ops", "tier": "long"}, principal=P)
    report = a.curator.run(principal=P)
    assert report.contradictions_found == 1
    (link,) = links(a)
    assert link[2] == "contradicts"
    carried = sync(a, b)
    assert links(b) == [link]

    a.curator.rollback(report.run_id, principal=P)
    assert links(a) == []
    removal = sync(a, b)
    assert links(b) == []
    assert any(item.link_removal is not None for page in removal for item in page.items)

    # the older push that carried the link, again: the removal is newer, the link stays gone
    assert replay(carried, b).applied == 0
    assert links(b) == []
    assert replay(removal, b).applied == 0  # the removal again: nothing more to do

    # linking the two again later is a newer link: it replicates, and the removal no longer hides it
    time.sleep(0.01)
    again = a.link(link[0], link[1], "contradicts", principal=P)
    sync(a, b)
    assert links(b) == links(a) == [(link[0], link[1], "contradicts", again.created_at.isoformat())]
    assert replay(removal, b).applied == 0 and links(b) == links(a)


def test_anti_entropy_items_carry_the_removal_of_a_link(pair: tuple[Service, Service]) -> None:
    a, b = pair
    x = a.add({"content": "The API rate limit is 100 requests per minute.", "namespace": "ops", "tier": "long"}, principal=P)
    y = a.add({"content": "The API rate limit is 500 requests per minute.", "namespace": "ops", "tier": "long"}, principal=P)
    report = a.curator.run(principal=P)
    assert report.contradictions_found == 1
    sync(a, b)
    assert links(b) != []
    a.curator.rollback(report.run_id, principal=P)
    # b missed the push; anti-entropy ships the memories' current state, the removal with it
    page = a.replica.items([x.id, y.id], principal=P)
    assert [item.link_removal.relation.value for item in page.items if item.link_removal is not None] == ["contradicts"]
    b.replica.apply(page, principal=P)
    assert links(b) == links(a) == []
