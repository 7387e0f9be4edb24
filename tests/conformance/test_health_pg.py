"""Health with PostgreSQL stopped: /readyz answers 503 naming the store as down (the only
case it answers 503), doctor exits 1 saying so, and neither shows the password."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tests.http.http_support import SpawnedServer, server_env


def test_a_stopped_postgres_is_named_down_and_readyz_answers_503(pg_private: Any, tmp_path: Path) -> None:
    name = pg_private.create_database()
    url = pg_private.dsn_for(name)
    secret_url = url + ("&" if "?" in url else "?") + "password=pg-health-secret-5521"  # trust auth ignores it; it must not leak
    server = SpawnedServer(tmp_path, secret_url).wait_ready()  # type: ignore[arg-type]
    try:
        ok = httpx.get(server.url + "/readyz", timeout=10)
        assert ok.status_code == 200 and ok.json()["components"]["store"] == {"status": "ok"}, ok.text
        pg_private.stop()
        deadline = time.monotonic() + 20
        while (down := httpx.get(server.url + "/readyz", timeout=15)).status_code != 503:
            assert time.monotonic() < deadline, down.text
        body = down.json()
        assert body["status"] == "down" and body["components"]["store"]["status"] == "down"
        assert "PostgreSQL" in body["components"]["store"]["reason"]
        assert body["components"]["bus"] == {"status": "degraded", "reason": "not checked: the store is down"}
        assert "pg-health-secret-5521" not in down.text
        doctor = subprocess.run(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", secret_url, "doctor", "--json"],
            capture_output=True,
            text=True,
            env=server_env(tmp_path),
            timeout=120,
        )
        assert doctor.returncode == 1
        report = json.loads(doctor.stdout)
        assert report["status"] == "down" and report["components"]["store"]["status"] == "down"
        assert "pg-health-secret-5521" not in doctor.stdout + doctor.stderr
    finally:
        server.terminate()
        pg_private.start()
