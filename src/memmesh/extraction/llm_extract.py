"""Fact extraction with an LLM: a strict schema, every field validated, bounded repairs.

Turns go to the model in batches (``extraction.batch_turns``), each turn numbered. The model
must answer one JSON object matching :data:`SCHEMA`; pydantic validates every field
(:class:`LlmFacts`). A reply that fails gets up to ``repairs`` repair prompts that quote the
validation error back to the model. A batch that still fails — the server timed out or kept
answering 429, the JSON stays broken, a field keeps the wrong type — falls back to the
offline extractor for its turns, and the failure is counted with its reason. Facts that
name a turn outside the batch are dropped and counted too: a fact must come from a turn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memmesh.errors import LLMError
from memmesh.extraction.offline import Fact, extract_turn, speaker_name
from memmesh.llm.client import LLMClient, Message
from memmesh.model import Kind

FactKind = Literal["fact", "preference", "episode", "procedure"]


class LlmFact(BaseModel):
    """One fact as the model must give it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    turn: int = Field(ge=1, description="number of the turn it comes from")
    content: str = Field(min_length=3, max_length=600, description="self-contained statement, speaker named, no pronouns")
    kind: FactKind
    tags: list[str] = Field(max_length=8)
    subject: str | None = Field(default=None, max_length=80, description="who or what it is about, for single-valued attributes")
    attribute: str | None = Field(default=None, max_length=80, description="e.g. 'lives in', 'favourite colour'; null if not single-valued")
    value: str | None = Field(default=None, max_length=200)


class LlmFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    facts: list[LlmFact] = Field(max_length=256)


SCHEMA: dict[str, Any] = LlmFacts.model_json_schema()
"""The JSON schema the model's reply must match (sent as ``response_format``)."""

SYSTEM = (
    "You extract durable facts from a conversation for a long-term memory. Reply with ONE JSON object and nothing else: "
    '{"facts": [{"turn": <number of the turn>, "content": "<one self-contained statement naming the speaker, no pronouns>", '
    '"kind": "fact"|"preference"|"episode"|"procedure", "tags": ["<short lowercase tag>", ...], '
    '"subject": <string or null>, "attribute": <string or null>, "value": <string or null>}]}. '
    "Keep personal facts, preferences, decisions, plans, events with their dates, quantities and names. Skip greetings, "
    "questions and small talk. Use subject/attribute/value only for things that hold one value at a time "
    '(e.g. subject "Ana", attribute "lives in", value "Paris"). An empty list is a valid answer.'
)


@dataclass
class BatchOutcome:
    facts: list[Fact] = field(default_factory=list)
    fallback_turns: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    repairs: int = 0


def render_turns(turns: Sequence[tuple[int, str, str | None, str]]) -> str:
    """The batch as the model sees it: ``[turn N] speaker: text`` lines."""
    return "\n".join(f"[turn {n}] {speaker_name(role, name)}: {text}" for n, role, name, text in turns)


def extract_batch(client: LLMClient, turns: Sequence[tuple[int, str, str | None, str]], *, repairs: int, limit: int) -> BatchOutcome:
    """Facts for one batch of ``(index, role, name, text)`` turns; see the module doc."""
    out = BatchOutcome()
    numbers = {i + 1: turn for i, turn in enumerate(turns)}
    shown = [(i + 1, role, name, text) for i, (_idx, role, name, text) in enumerate(turns)]
    messages: list[Message] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": render_turns(shown)}]
    parsed: LlmFacts | None = None
    for attempt in range(repairs + 1):
        reply: dict[str, Any] | None = None
        try:
            reply = client.complete_json(messages, SCHEMA)
            parsed = LlmFacts.model_validate(reply)
            break
        except LLMError as exc:
            out.failures.append(_reason(exc))
            if "reply" not in exc.details:
                break  # the server failed (after its own retries): repairing cannot help
            problem, shown_reply = exc.reason, str(exc.details["reply"])
        except ValidationError as exc:
            out.failures.append(f"schema: {_first_error(exc)}")
            problem, shown_reply = _first_error(exc), json.dumps(reply)[:2000]
        if attempt < repairs:
            out.repairs += 1
            messages = [
                *messages[:2],
                {"role": "assistant", "content": shown_reply},
                {"role": "user", "content": f"That reply is invalid: {problem}. Answer again with only the JSON object of the schema."},
            ]
    if parsed is None:
        out.fallback_turns = [idx for idx, *_ in turns]
        for idx, role, name, text in turns:
            out.facts.extend(extract_turn(text, role=role, name=name, index=idx, limit=limit))
        return out
    out.failures = []  # a repaired batch succeeded: its earlier attempts are reported as repairs
    per_turn: dict[int, int] = {}
    for item in parsed.facts:
        source = numbers.get(item.turn)
        if source is None:
            out.failures.append(f"fact names turn {item.turn}, not in the batch: dropped")
            continue
        if per_turn.get(item.turn, 0) >= limit:
            continue
        per_turn[item.turn] = per_turn.get(item.turn, 0) + 1
        out.facts.append(_fact(item, source[0]))
    return out


def _fact(item: LlmFact, index: int) -> Fact:
    kind = Kind(item.kind)
    tags = [t.strip().lower() for t in item.tags if t.strip()][:8]
    fact = Fact(content=item.content.strip(), kind=kind, tags=tags, turns=[index])
    if item.subject and item.attribute and item.value:
        fact.slot = f"{item.subject.strip().lower()}|{item.attribute.strip().lower()}"
        fact.value = item.value.strip().lower()
    return fact


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "reply"
    return f"{where}: {err['msg']}"


def _reason(exc: LLMError) -> str:
    return exc.reason[:300]


__all__ = ["SCHEMA", "BatchOutcome", "LlmFact", "LlmFacts", "extract_batch"]
