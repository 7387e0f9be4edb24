"""Rate limits and daily write quotas: the pure arithmetic, then through a real server."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from memmesh import Client, RateLimitedError
from memmesh.limits import RateLimiter, quota_retry_after, retry_after_header, seconds_until_next_day, utc_day
from memmesh.model import LOCAL_PRINCIPAL


def test_token_bucket_allows_a_burst_then_refills_at_the_rate():
    limiter = RateLimiter(per_minute=60)
    assert all(limiter.check("k", 100.0) == 0.0 for _ in range(60))
    wait = limiter.check("k", 100.0)
    assert wait == pytest.approx(1.0)
    assert limiter.check("other", 100.0) == 0.0  # keys are independent
    assert limiter.check("k", 100.5) == pytest.approx(0.5)
    assert limiter.check("k", 101.0) == 0.0
    assert limiter.check("k", 101.0) > 0


def test_refused_calls_do_not_consume_and_idle_keys_refill_fully():
    limiter = RateLimiter(per_minute=2)
    assert limiter.check("k", 0.0) == 0.0 and limiter.check("k", 0.0) == 0.0
    for _ in range(5):
        assert limiter.check("k", 0.0) == pytest.approx(30.0)
    assert limiter.check("k", 30.0) == 0.0
    assert limiter.check("k", 1000.0) == 0.0 and limiter.check("k", 1000.0) == 0.0
    assert limiter.check("k", 1000.0) > 0


def test_disabled_limiter_and_bounded_memory():
    assert RateLimiter(per_minute=0).check("k", 0.0) == 0.0
    limiter = RateLimiter(per_minute=10, max_keys=3)
    for i in range(10):
        limiter.check(f"k{i}", float(i * 100))  # each older key has refilled by the next one
    assert len(limiter._buckets) <= 3


def test_quota_and_retry_after_arithmetic():
    noon = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert utc_day(noon) == "2026-03-01"
    assert seconds_until_next_day(noon) == 12 * 3600
    assert quota_retry_after(5, 5, noon) is None
    assert quota_retry_after(6, 5, noon) == 12 * 3600
    assert quota_retry_after(10**6, 0, noon) is None
    assert retry_after_header(0.01) == "1" and retry_after_header(1.2) == "2" and retry_after_header(30) == "30"


def test_rate_limit_answers_429_with_retry_after_and_the_client_waits_it_out(serve):
    running = serve(limits={"rate_limit_per_minute": 60})
    key = running.service.create_key("bot", role="writer", principal=LOCAL_PRINCIPAL)
    http = running.http(key.key)
    statuses = []
    while 429 not in statuses and len(statuses) < 400:  # the bucket refills while we send: bounded loop
        statuses.append(http.get("/api/v1/memories", params={"limit": 1}).status_code)
    assert statuses[-1] == 429 and len(statuses) > 60 and set(statuses[:-1]) == {200}
    refused = http.get("/api/v1/memories")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "rate_limited" and refused.json()["error"]["details"]["retry_after"] == 1
    assert running.http().get("/healthz").status_code == 200  # health is not rate limited

    impatient = running.client(key.key, retries=0)
    with pytest.raises(RateLimitedError):
        for _ in range(400):  # drain whatever refilled meanwhile
            impatient.stats()
    with Client(running.url, api_key=key.key, retries=3) as patient:
        assert patient.add("written after waiting").content == "written after waiting"
    assert running.service.stats(principal=LOCAL_PRINCIPAL).total == 1


def test_daily_write_quota_per_namespace(serve):
    running = serve(limits={"daily_write_quota": 3})
    http = running.http()
    for i in range(3):
        assert http.post("/api/v1/memories", json={"content": f"n{i}", "namespace": "busy"}).status_code == 201
    refused = http.post("/api/v1/memories", json={"content": "one too many", "namespace": "busy"})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]["details"]["namespace"] == "busy"
    batch = http.post(
        "/api/v1/memories/batch",
        json={"items": [{"content": "q1", "namespace": "calm"}] * 1 + [{"content": f"q{i}", "namespace": "calm"} for i in range(2, 5)]},
    )
    assert batch.status_code == 429  # four writes to a namespace with a quota of three: none stored
    assert http.post("/api/v1/memories", json={"content": "elsewhere", "namespace": "calm"}).status_code == 201
    assert {n.namespace: n.count for n in running.service.stats(principal=LOCAL_PRINCIPAL).by_namespace} == {"busy": 3, "calm": 1}
    with pytest.raises(RateLimitedError), Client(running.url, retries=0) as m:
        m.add("still too many", namespace="busy")


def test_retry_after_is_honoured_but_bounded():
    from memmesh.interfaces.client import retry_delay

    request = httpx.Request("GET", "http://x/")
    assert retry_delay(httpx.Response(429, headers={"Retry-After": "2"}, request=request), 1, 30) == 2
    assert retry_delay(httpx.Response(429, headers={"Retry-After": "86400"}, request=request), 1, 30) == 30
    assert 0 < retry_delay(httpx.Response(503, request=request), 1, 30) <= 0.2
    assert retry_delay(None, 10, 5) <= 5
