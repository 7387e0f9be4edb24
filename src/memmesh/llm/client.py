"""A small client for OpenAI-compatible chat completions (Ollama, vLLM, llama.cpp, OpenAI).

memmesh never needs an LLM; when ``[llm]`` names a server, extraction (and the curator) may
ask it for JSON. Everything that can go wrong on that path is bounded here, once:

- every request has a timeout (``timeout_s``), so an agent never hangs on a slow model;
- 429 and 5xx answers and transport failures are retried at most ``retries`` times with
  exponential backoff, honouring ``Retry-After`` (capped by ``max_backoff_s``) so a rate
  limit is obeyed rather than hammered;
- at most ``max_concurrency`` requests are in flight per client (a semaphore): a local
  model serves one or two requests at a time and queues the rest badly;
- the API key is sent only in the ``Authorization`` header and never appears in a
  message, a log line or ``repr``: errors name the server and the status, not the key.

Failures raise :class:`memmesh.errors.LLMError` (callers decide whether to fall back).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from memmesh.errors import ConfigError, LLMError
from memmesh.redact import redact_url
from memmesh.wording import count

if TYPE_CHECKING:
    pass

log = logging.getLogger("memmesh.llm")

Message = Mapping[str, str]
"""One chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``."""


@dataclass(frozen=True)
class LLMConfig:
    """What the client needs (built from the ``[llm]`` section by the composition root)."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    retries: int = 2
    max_concurrency: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"llm.base_url must be an http(s) URL (got {redact_url(self.base_url)!r})")
        if not self.model.strip():
            raise ConfigError("llm.model is empty: name the model the server should run (e.g. llama3.1:8b)")
        if self.timeout_s <= 0 or self.retries < 0 or self.max_concurrency < 1:
            raise ConfigError("llm.timeout_s must be > 0, llm.retries >= 0 and llm.max_concurrency >= 1")


class _Retryable(Exception):
    """One failed attempt worth repeating, with the wait the server asked for (if any)."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


class LLMClient:
    """Chat completions with bounded time, retries and concurrency; thread-safe.

    >>> client = LLMClient(LLMConfig(base_url="http://127.0.0.1:11434/v1", model="llama3.1"))  # doctest: +SKIP
    >>> client.complete_json([{"role": "user", "content": "Reply {\\"ok\\": true}"}])        # doctest: +SKIP
    {'ok': True}
    """

    def __init__(self, config: LLMConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        headers = {"Content-Type": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        import httpx  # here, not at import: `import memmesh` stays light when no LLM is configured

        self._http = httpx.Client(base_url=config.base_url.rstrip("/") + "/", timeout=config.timeout_s, headers=headers)
        self.calls = 0
        """Requests sent (attempts, retries included): for reports and tests."""

    def __repr__(self) -> str:
        return f"LLMClient(base_url={redact_url(self.config.base_url)!r}, model={self.config.model!r})"

    def close(self) -> None:
        self._http.close()

    def complete(self, messages: Sequence[Message], *, json_mode: bool = False, schema: Mapping[str, Any] | None = None) -> str:
        """The assistant's reply text for ``messages`` (after bounded retries).

        ``json_mode`` asks the server for a JSON object (``response_format``); with a
        ``schema`` it asks for that JSON schema (servers that ignore it still answer, and
        :meth:`complete_json` validates what comes back either way)."""
        body: dict[str, Any] = {"model": self.config.model, "messages": [dict(m) for m in messages], "temperature": self.config.temperature}
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "memmesh", "schema": dict(schema), "strict": True}}
        elif json_mode:
            body["response_format"] = {"type": "json_object"}
        last = "no attempt made"
        for attempt in range(self.config.retries + 1):
            try:
                return self._attempt(body)
            except _Retryable as failed:
                last = failed.reason
                if attempt == self.config.retries:
                    break
                wait = failed.wait_s if failed.wait_s is not None else self.config.backoff_s * (2**attempt)
                wait = min(max(wait, 0.0), self.config.max_backoff_s)
                log.info("llm request failed (%s); retry %d/%d in %.2fs", last, attempt + 1, self.config.retries, wait)
                self._sleep(wait)
        raise LLMError(
            f"the LLM server at {redact_url(self.config.base_url)} failed after {count(self.config.retries + 1, 'attempt')}: {last}",
            details={"attempts": self.config.retries + 1, "last_error": last},
        )

    def complete_json(self, messages: Sequence[Message], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The reply parsed as one JSON object (code fences around it are tolerated).

        Raises :class:`LLMError` when the server fails or the reply is not a JSON object;
        the error's ``details["reply"]`` holds the start of what came back, for a repair prompt.
        Validating the fields against ``schema`` is the caller's job (with pydantic)."""
        text = self.complete(messages, json_mode=True, schema=schema)
        return parse_json_object(text)

    def _attempt(self, body: dict[str, Any]) -> str:
        import httpx

        with self._slots:
            self.calls += 1
            try:
                response = self._http.post("chat/completions", json=body)
            except httpx.TimeoutException:
                raise _Retryable(f"no answer within {self.config.timeout_s:g}s") from None
            except httpx.HTTPError as exc:
                raise _Retryable(f"could not reach the server ({type(exc).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}", _retry_after(response.headers.get("retry-after")))
        if response.status_code >= 400:
            raise LLMError(
                f"the LLM server at {redact_url(self.config.base_url)} refused the request: HTTP {response.status_code} "
                f"{_snippet(response.text)} (check llm.model and llm.api_key_env)",
                details={"status": response.status_code},
            )
        try:
            payload = response.json()
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable(f"not a chat completion: {_snippet(response.text)}") from None
        if not isinstance(content, str):
            raise _Retryable("the completion's message has no text content")
        return content


def parse_json_object(text: str) -> dict[str, Any]:
    """One JSON object from a model's reply, tolerating a ```json fence around it."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise LLMError(f"the LLM reply is not JSON ({exc.msg} at character {exc.pos})", details={"reply": text[:2000]}) from None
    if not isinstance(value, dict):
        raise LLMError(f"the LLM reply is JSON but not an object (got {type(value).__name__})", details={"reply": text[:2000]})
    return value


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text[:200] + ("…" if len(text) > 200 else "")


__all__ = ["LLMClient", "LLMConfig", "Message", "parse_json_object"]
