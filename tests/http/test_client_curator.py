"""The remote ``Client`` and ``AsyncClient`` run, list and roll back curator runs on a real
uvicorn, as ``Memory.curate`` / ``curator_runs`` / ``curator_rollback`` do in-process."""

from __future__ import annotations

import asyncio

import pytest

from memmesh.errors import ConflictError, InvalidInputError, NotFoundError
from memmesh.interfaces.client import AsyncClient


def test_client_curates_lists_and_rolls_back(server) -> None:
    client = server.client()
    for text in ("Deploys happen on Tuesdays", "Deploys happen on Tuesdays only", "The office opens at nine"):
        client.add(text, namespace="ops")
    dry = client.curate(dry_run=True, namespace="ops")
    assert dry["dry_run"] is True and dry["namespace"] == "ops" and dry["memories_scanned"] == 3
    real = client.curate(namespace="ops", max_ops=50)
    assert real["dry_run"] is False and real["run_id"] != dry["run_id"]
    runs = client.curator_runs(limit=5)
    assert [r["id"] for r in runs] == [real["run_id"], dry["run_id"]]
    undone = client.curator_rollback(real["run_id"])
    assert undone["run_id"] == real["run_id"]
    with pytest.raises(ConflictError):
        client.curator_rollback(real["run_id"])  # a second rollback
    with pytest.raises(NotFoundError):
        client.curator_rollback("0190" + "0" * 32)
    with pytest.raises(InvalidInputError):
        client.curate(max_ops=0)


def test_async_client_curates_too(server) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url) as client:
            await client.add("Backups run at midnight", namespace="ops")
            report = await client.curate(dry_run=True)
            assert report["dry_run"] is True and report["memories_scanned"] == 1
            assert [r["id"] for r in await client.curator_runs()] == [report["run_id"]]
            with pytest.raises(NotFoundError):
                await client.curator_rollback("0190" + "0" * 32)

    asyncio.run(scenario())
