"""The curator's LLM step: confirm contradictions the heuristics cannot see.

The heuristics in :mod:`memmesh.curator.text` catch disagreements a negation or a number
shows ("the limit is 100" / "the limit is 500"). Two statements of one subject that
disagree in words only ("Ana lives in Lyon" / "Ana lives in Paris") look alike to them;
the plan lists such pairs as *unsure* and, when ``[llm]`` names a server, this module asks
the model about each (the most similar first, at most :data:`MAX_REVIEWS` per run, so a
run's cost and time stay bounded). A failed or malformed answer is one error in the run's
report, never a failed run: the pair is simply left unlinked until a later run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, ValidationError

from memmesh.curator.plan import Contradiction
from memmesh.errors import LLMError
from memmesh.model import Memory

if TYPE_CHECKING:
    from memmesh.llm.client import LLMClient

MAX_REVIEWS = 50
"""Unsure pairs one run asks the LLM about (the most similar first); the rest wait for the next run."""

SCHEMA = {
    "type": "object",
    "properties": {"contradicts": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["contradicts", "reason"],
    "additionalProperties": False,
}

PROMPT = (
    "You check a memory store for statements that disagree. Two statements contradict when "
    "both cannot be true at the same time about the same subject (for example two different "
    "home towns of one person). Statements that add detail, or are about different subjects, "
    'do not contradict. Answer only JSON: {"contradicts": true|false, "reason": "<one short sentence>"}.'
)


class Verdict(BaseModel):
    """The model's answer for one pair (validated: a reply of another shape is an error)."""

    contradicts: bool
    reason: str = Field(max_length=500)


@dataclass
class Review:
    """What the LLM step found: pairs confirmed, pairs asked about, and each failure."""

    confirmed: list[Contradiction] = field(default_factory=list)
    reviewed: int = 0
    errors: list[str] = field(default_factory=list)


def review(llm: LLMClient, unsure: Sequence[Contradiction], limit: int = MAX_REVIEWS) -> Review:
    """Ask ``llm`` about the ``limit`` most similar unsure pairs; never raises for a bad answer."""
    result = Review()
    for pair in sorted(unsure, key=lambda c: (-c.similarity, c.a.id, c.b.id))[:limit]:
        result.reviewed += 1
        try:
            verdict = _ask(llm, pair)
        except LLMError as exc:
            result.errors.append(f"LLM review of {pair.a.id} / {pair.b.id} failed: {exc.message}")
            continue
        if verdict.contradicts:
            reason = " ".join(verdict.reason.split()) or "the statements disagree"
            result.confirmed.append(Contradiction(a=pair.a, b=pair.b, reason=f"LLM: {reason}", similarity=pair.similarity))
    return result


def _ask(llm: LLMClient, pair: Contradiction) -> Verdict:
    statements = f"Statement A: {_text(pair.a)}\nStatement B: {_text(pair.b)}"
    reply = llm.complete_json([{"role": "system", "content": PROMPT}, {"role": "user", "content": statements}], schema=SCHEMA)
    try:
        return Verdict.model_validate(reply)
    except ValidationError as exc:
        problem = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors())
        raise LLMError(f"the LLM reply has the wrong shape ({problem})") from None


def _text(memory: Memory) -> str:
    return f"{memory.title}: {memory.content}" if memory.title else memory.content


__all__ = ["MAX_REVIEWS", "Review", "Verdict", "review"]
