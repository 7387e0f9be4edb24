"""Secret hygiene: secret files must be the running user's alone, and no output ever shows a secret.

A secret is planted everywhere memmesh could leak it — an embeddings API key file (read by
an embedder whose server echoes the key back in its errors) and a PostgreSQL password in
the store URL — and every output is grepped for it: ``doctor`` (text and JSON), the
server's logs (plain and ``--log-json``), HTTP responses (including errors and notices),
``/readyz`` and CLI error messages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from tests.conformance.conftest import PgServer, pg_server  # noqa: F401  (the session PostgreSQL)
from tests.http.http_support import SpawnedServer, server_env

from memmesh.config import check_secret_file, load_settings
from memmesh.errors import ConfigError
from memmesh.redact import redact_url

API_KEY = "sk-PLANTED-embed-key-4f9a2c"
PG_PASSWORD = "PLANTED-pg-pass-77d1"
BEARER = "mm_0123456789ab_PLANTED-bearer-secret"


class EchoKeyHandler(BaseHTTPRequestHandler):
    """An embeddings server that refuses every key and, carelessly, quotes it back."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({"error": f"invalid api key: {self.headers.get('authorization')}"}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoKeyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def key_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "embed.key"
    path.write_text(API_KEY + "\n")
    path.chmod(mode)
    return path


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", *args],
        capture_output=True,
        text=True,
        env={**server_env(tmp_path), **(env or {})},
        timeout=120,
    )


def openai_env(url: str, key: Path) -> dict[str, str]:
    return {
        "MEMMESH_EMBEDDINGS_PROVIDER": "openai",
        "MEMMESH_EMBEDDINGS_MODEL": "text-embedding-3-small",
        "MEMMESH_EMBEDDINGS_URL": url,
        "MEMMESH_EMBEDDINGS_API_KEY_FILE": str(key),
        "MEMMESH_EMBEDDINGS_DIM": "8",
    }


# -- secret files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_a_secret_file_others_can_reach_is_refused_with_the_chmod_to_run(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, mode)
    with pytest.raises(ConfigError) as caught:
        check_secret_file("embeddings.api_key_file", path)
    assert f"(mode {mode:04o})" in caught.value.message and f"run `chmod 600 {path}`" in caught.value.message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_secret_files_are_accepted(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, mode)
    check_secret_file("embeddings.api_key_file", path)
    settings = load_settings(None, overrides={"embeddings": {"provider": "openai", "api_key_file": str(path)}}, env={})
    assert settings.embedding_api_key() == API_KEY


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_secret_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match=rf"belongs to uid 65534.*run `chown root {path} && chmod 600 {path}`"):
        check_secret_file("embeddings.api_key_file", path)


def test_serve_and_every_command_refuse_to_start_on_a_readable_key_file(tmp_path: Path, echo_server: str) -> None:
    path = key_file(tmp_path, 0o644)
    env = openai_env(echo_server, path)
    db = str(tmp_path / "m.db")
    for args in (("serve", "--db", db, "--port", "0"), ("--db", db, "stats"), ("--db", db, "store", "hello")):
        result = run_cli(tmp_path, *args, env=env)
        assert result.returncode != 0 and f"run `chmod 600 {path}`" in result.stderr, args
        assert "Traceback" not in result.stderr and API_KEY not in result.stderr + result.stdout
    assert not Path(db).exists() or run_cli(tmp_path, "--db", db, "stats", "--json", env={}).returncode == 0
    doctor = run_cli(tmp_path, "--db", db, "doctor", "--json", env=env)
    assert doctor.returncode == 1
    checks = json.loads(doctor.stdout)["checks"]
    assert checks[0]["name"] == "secret file" and checks[0]["status"] == "fail" and "chmod 600" in checks[0]["detail"]
    # also when the provider does not use it: a configured secret file is checked all the same
    keyword = run_cli(tmp_path, "--db", db, "stats", env={"MEMMESH_EMBEDDINGS_API_KEY_FILE": str(path)})
    assert keyword.returncode != 0 and "chmod 600" in keyword.stderr


# -- planted secrets never leak ------------------------------------------------------------------------


def test_redact_url_hides_userinfo_and_query_passwords() -> None:
    assert redact_url("postgresql://app:pw@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_url("postgresql://app:p@ss@db/x?sslmode=require") == "postgresql://app:***@db/x?sslmode=require"
    assert redact_url("postgresql:///x?host=/tmp&password=pw&user=a") == "postgresql:///x?host=/tmp&password=***&user=a"
    assert redact_url("sqlite:////data/a@b.db") == "sqlite:////data/a@b.db"


def assert_clean(text: str, where: str) -> None:
    assert API_KEY not in text, f"the API key leaked into {where}"
    assert "PLANTED-bearer-secret" not in text, f"a client's bearer token leaked into {where}"
    assert PG_PASSWORD not in text, f"the PostgreSQL password leaked into {where}"


def test_cli_errors_never_show_a_store_password(tmp_path: Path) -> None:
    for url in (f"postgresql://memmesh:{PG_PASSWORD}@127.0.0.1:1/memmesh", f"mysql://memmesh:{PG_PASSWORD}@127.0.0.1/db"):
        result = run_cli(tmp_path, "--db", url, "stats")
        assert result.returncode != 0 and result.stderr.startswith("error: ")
        assert_clean(result.stdout + result.stderr, f"`stats` on {url.split(':')[0]}")
        doctor = run_cli(tmp_path, "--db", url, "doctor", "--json")
        assert_clean(doctor.stdout + doctor.stderr, "doctor")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("log_json", [False, True], ids=["plain-logs", "json-logs"])
def test_planted_secrets_appear_in_no_output(tmp_path: Path, pg_server: PgServer, echo_server: str, log_json: bool) -> None:  # noqa: F811
    name = pg_server.create_database("secrets")
    try:
        url = pg_server.dsn_for(name) + f"&password={PG_PASSWORD}"
        userinfo_url = url.replace("postgresql:///", f"postgresql://memmesh:{PG_PASSWORD}@/", 1)
        env = openai_env(echo_server, key_file(tmp_path, 0o600))
        outputs: dict[str, str] = {}

        doctor = run_cli(tmp_path, "--db", url, "doctor", env=env)
        doctor_json = run_cli(tmp_path, "--db", url, "doctor", "--json", env=env)
        assert doctor_json.returncode in (0, 1) and json.loads(doctor_json.stdout)["checks"]
        assert "invalid api key: Bearer ***" in doctor_json.stdout  # the echo is there, the key is not
        outputs |= {"doctor": doctor.stdout + doctor.stderr, "doctor --json": doctor_json.stdout + doctor_json.stderr}
        other = run_cli(tmp_path, "--db", userinfo_url, "stats", env=env)
        outputs["stats (password in userinfo)"] = other.stdout + other.stderr

        # the URL goes to --db as it is (a Path would fold "postgresql:///" into a relative file name)
        server = SpawnedServer(tmp_path, url, *(["--log-json"] if log_json else []), env=env)  # type: ignore[arg-type]
        try:
            server.wait_ready()
            with httpx.Client(base_url=server.url, timeout=30) as http:
                added = http.post("/api/v1/memories", json={"content": "the deploy key rotates on Fridays"})
                recalled = http.post("/api/v1/recall", json={"query": "deploy key"})
                bad = http.post("/api/v1/memories", json={"content": ""})
                ready = http.get("/readyz")
                wrong_key = http.get("/api/v1/memories", headers={"Authorization": f"Bearer {BEARER}"})
                outputs |= {"add": added.text, "recall": recalled.text, "error": bad.text, "/readyz": ready.text, "401": wrong_key.text}
            assert wrong_key.status_code == 401
            assert added.status_code == 201 and ready.status_code == 200 and bad.status_code == 422
            assert "store" not in ready.json()  # /readyz names no store at all (issue 12)
            assert f"postgresql:///{name}?" in doctor_json.stdout and "password=***" in doctor_json.stdout  # really on PostgreSQL, redacted
            assert "Bearer ***" in added.text or "Bearer ***" in recalled.text  # the embedder's error is reported, scrubbed
        finally:
            server.terminate()
        outputs["serve log"] = server.log.read_text()
        assert outputs["serve log"].strip()
        for where, text in outputs.items():
            assert_clean(text, where)
    finally:
        pg_server.drop_database(name)
