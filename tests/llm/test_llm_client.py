"""The LLM client against a real local OpenAI-compatible server: timeouts, bounded retries
with backoff (429 + Retry-After, 5xx), the concurrency limit, JSON parsing, and the API key
sent only in its header, never in an error or a log line."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from fake_openai import Reply, fake_openai
from memmesh.compose import build
from memmesh.config import load_settings
from memmesh.errors import ConfigError, LLMError
from memmesh.llm import LLMClient, LLMConfig

SECRET = "sk-test-SECRET-123456"


def client(url: str, sleeps: list[float] | None = None, **options: object) -> LLMClient:
    config = LLMConfig(base_url=url, model="m", api_key=SECRET, **options)  # type: ignore[arg-type]
    return LLMClient(config, sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_complete_json_sends_model_messages_schema_and_key_in_header() -> None:
    with fake_openai() as server:
        server.script = [Reply(content='```json\n{"ok": true}\n```')]
        got = client(server.url).complete_json([{"role": "user", "content": "hi"}], {"type": "object"})
        assert got == {"ok": True}
        request = server.requests[0]
        assert request["path"] == "/v1/chat/completions"
        assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
        assert request["body"]["model"] == "m"
        assert request["body"]["messages"] == [{"role": "user", "content": "hi"}]
        assert request["body"]["response_format"]["type"] == "json_schema"


def test_429_with_retry_after_is_obeyed_then_succeeds() -> None:
    sleeps: list[float] = []
    with fake_openai() as server:
        server.script = [Reply(status=429, raw="{}", headers={"Retry-After": "3"}), Reply(status=503, raw="busy"), Reply(content="{}")]
        assert client(server.url, sleeps, retries=2, backoff_s=0.25).complete_json([{"role": "user", "content": "x"}]) == {}
        assert len(server.requests) == 3
    assert sleeps == [3.0, 0.5]  # Retry-After first, then exponential backoff (0.25 * 2**1)


def test_retry_after_is_capped_by_max_backoff() -> None:
    sleeps: list[float] = []
    with fake_openai() as server:
        server.script = [Reply(status=429, raw="{}", headers={"Retry-After": "3600"}), Reply(content="{}")]
        client(server.url, sleeps, max_backoff_s=2.0).complete_json([{"role": "user", "content": "x"}])
    assert sleeps == [2.0]


def test_retries_are_bounded_and_the_error_names_the_cause_not_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with fake_openai() as server:
        server.default = lambda body: Reply(status=500, raw="boom")
        with pytest.raises(LLMError) as failed:
            client(server.url, retries=2).complete([{"role": "user", "content": "x"}])
        assert len(server.requests) == 3
    assert "HTTP 500" in failed.value.message and "3 attempt" in failed.value.message
    assert SECRET not in failed.value.message and SECRET not in str(failed.value.details)
    assert SECRET not in caplog.text
    assert SECRET not in repr(client(server.url)) and SECRET not in repr(client(server.url).config)


def test_timeout_is_retried_then_reported() -> None:
    with fake_openai() as server:
        server.default = lambda body: Reply(content="{}", delay_s=0.5)
        with pytest.raises(LLMError, match=r"no answer within 0.1s"):
            client(server.url, retries=1, timeout_s=0.1).complete([{"role": "user", "content": "x"}])
        assert len(server.requests) == 2


def test_4xx_is_not_retried() -> None:
    with fake_openai() as server:
        server.script = [Reply(status=401, raw='{"error": "bad key"}')]
        with pytest.raises(LLMError, match="refused the request: HTTP 401"):
            client(server.url, retries=3).complete([{"role": "user", "content": "x"}])
        assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "message"),
    [("not json at all", "not JSON"), ("[1, 2]", "not an object"), ('{"a": ', "not JSON")],
)
def test_broken_json_is_an_llm_error_carrying_the_reply(reply: str, message: str) -> None:
    with fake_openai() as server:
        server.script = [Reply(content=reply)]
        with pytest.raises(LLMError, match=message) as failed:
            client(server.url).complete_json([{"role": "user", "content": "x"}])
        assert failed.value.details["reply"] == reply


def test_a_reply_that_is_not_a_chat_completion_is_retried() -> None:
    with fake_openai() as server:
        server.script = [Reply(raw='{"unexpected": 1}'), Reply(content='{"x": 1}')]
        assert client(server.url, retries=1).complete_json([{"role": "user", "content": "x"}]) == {"x": 1}


def test_concurrency_is_limited() -> None:
    with fake_openai() as server:
        server.default = lambda body: Reply(content="{}", delay_s=0.15)
        shared = client(server.url, max_concurrency=2)
        threads = [threading.Thread(target=shared.complete, args=([{"role": "user", "content": "x"}],)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(server.requests) == 6
        assert server.max_in_flight == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [({"base_url": "ftp://x"}, "http"), ({"model": " "}, "llm.model is empty"), ({"max_concurrency": 0}, "max_concurrency")],
)
def test_bad_config_is_refused_clearly(options: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"base_url": "http://127.0.0.1:1/v1", "model": "m", **options}
    with pytest.raises(ConfigError, match=message):
        LLMConfig(**values)  # type: ignore[arg-type]


def test_settings_build_the_client_with_the_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", SECRET)
    settings = load_settings(
        None,
        overrides={
            "data_dir": str(tmp_path),
            "embeddings": {"provider": "none"},
            "llm": {"base_url": "http://127.0.0.1:9/v1", "model": "qwen", "api_key_env": "MY_LLM_KEY", "retries": 4},
        },
        env={"MEMMESH_CONFIG": ""},
    )
    service = build(settings)
    try:
        assert service.llm is not None
        assert service.llm.config.api_key == SECRET and service.llm.config.retries == 4 and service.llm.config.model == "qwen"
        assert service.extraction.mode == "llm"
    finally:
        service.store.close()


def test_key_file_must_be_private(tmp_path: Path) -> None:
    key = tmp_path / "llm.key"
    key.write_text(SECRET)
    key.chmod(0o644)
    settings = load_settings(
        None,
        overrides={
            "data_dir": str(tmp_path),
            "embeddings": {"provider": "none"},
            "llm": {"base_url": "http://127.0.0.1:9/v1", "api_key_file": str(key)},
        },
        env={"MEMMESH_CONFIG": ""},
    )
    with pytest.raises(ConfigError, match=r"llm.api_key_file"):
        build(settings)
