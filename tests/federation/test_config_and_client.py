"""[federation] settings, their checks, and the Python Client's idempotent retries through a
quorum that is not met yet (issue 15)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tests.federation.mesh_support import mesh, wait_for

from memmesh import ConfigError
from memmesh.compose import build, build_mesh
from memmesh.config import load_settings
from memmesh.federation.peers import parse_peer_list, read_peer_keys
from memmesh.interfaces.client import Client


def test_federation_settings_follow_flag_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[federation]\npeers = "http://10.0.0.2:9077"\nquorum_writes = 2\nquorum_timeout_ms = 900\n')
    env = {"MEMMESH_FEDERATION_QUORUM_TIMEOUT_MS": "1500", "MEMMESH_FEDERATION_CATCHUP_INTERVAL_SECS": "7"}
    settings = load_settings(config, overrides={"federation": {"quorum_writes": 1}}, env=env)
    fed = settings.federation
    assert (fed.peers, fed.quorum_writes, fed.quorum_timeout_ms, fed.catchup_interval_secs) == ("http://10.0.0.2:9077", 1, 1500, 7.0)
    assert fed.max_ahead_ms == 500
    with pytest.raises(ConfigError, match="quorum_writes"):
        load_settings(None, overrides={"federation": {"quorum_writes": -1}}, env={"MEMMESH_CONFIG": ""})


def test_impossible_quorums_and_bad_peer_lists_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only 2 nodes"):
        settings = load_settings(
            None,
            overrides={
                "data_dir": str(tmp_path),
                "embeddings": {"provider": "none"},
                "federation": {"peers": "http://127.0.0.1:1", "quorum_writes": 3},
            },
            env={"MEMMESH_CONFIG": ""},
        )
        build_mesh(build(settings), settings)
    with pytest.raises(ConfigError, match="not an http"):
        parse_peer_list("ftp://x")
    with pytest.raises(ConfigError, match="twice"):
        parse_peer_list("http://a:1,http://a:1/")
    keys = tmp_path / "keys"
    keys.write_text("http://a:1 k-a\nk-default\n")
    assert read_peer_keys(keys, ["http://a:1", "http://b:2"]) == {"http://a:1": "k-a", "http://b:2": "k-default"}
    keys.write_text("http://zzz:1 k\n")
    with pytest.raises(ConfigError, match="line 1"):
        read_peer_keys(keys, ["http://a:1"])


def test_the_client_retries_a_quorum_not_met_write_idempotently_until_a_peer_returns(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2, "--quorum-writes", "2", "--quorum-timeout-ms", "500")
    a, b = nodes
    try:
        b.stop()
        threading.Timer(1.5, b.start).start()
        started = time.monotonic()
        with Client(a.url, retries=20, max_retry_wait=1.0) as client:
            record = client.add("kept once, acknowledged by two nodes", namespace="retry")
        assert time.monotonic() - started > 1.0  # it did wait for b
        assert [m for m in a.ids() if m == record.id] == [record.id] and len(a.ids()) == 1
        wait_for(lambda: b.ids() == {record.id}, 30, "b holds it")
    finally:
        time.sleep(0.1)
        for node in nodes:
            node.stop()


def test_a_large_batch_write_meets_the_quorum_in_parts_under_the_body_limit(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2, "--quorum-writes", "2", "--quorum-timeout-ms", "20000")
    a, b = nodes
    try:
        items = [{"content": f"{i} " + "x" * 3000, "namespace": "big"} for i in range(1000)]  # about 3 MB of content
        r = a.call("POST", "/api/v1/memories/batch", json={"items": items[:600]}, timeout=120)
        assert r.status_code == 201, r.text[:300]
        assert len(b.ids()) == 600  # held by b before the 201
    finally:
        for node in nodes:
            node.stop()
