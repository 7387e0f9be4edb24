"""The offline extractor's rules, on sentences whose facts are known."""

from __future__ import annotations

import pytest

from memmesh.extraction.offline import extract_turn, split_sentences
from memmesh.model import Kind


def contents(text: str, name: str | None = "Ana") -> list[str]:
    return [f.content for f in extract_turn(text, role="user", name=name)]


def test_sentences_split_without_breaking_abbreviations_or_decimals() -> None:
    assert split_sentences("Dr. Smith paid $3.50 today. Then we left!\nNew line here") == [
        "Dr. Smith paid $3.50 today.",
        "Then we left!",
        "New line here",
    ]


def test_first_person_is_rewritten_to_the_speaker() -> None:
    assert contents("I moved to Paris last month. My sister works at Acme.") == [
        "Ana moved to Paris last month.",
        "Ana's sister works at Acme.",
    ]


def test_questions_greetings_and_fillers_state_nothing() -> None:
    assert contents("Hi! How are you doing today? Thanks so much! Sounds good.") == []


def test_preferences_get_kind_tag_polarity_and_topic() -> None:
    likes, hates = extract_turn("I love green tea. I can't stand black coffee.", name="Ana")
    assert likes.kind is Kind.preference and "preference" in likes.tags and likes.polarity is True and likes.topic == "green tea"
    assert hates.polarity is False and hates.topic == "black coffee"
    assert likes.content == "Ana loves green tea."


def test_decisions_plans_dates_quantities_and_entities() -> None:
    decision = extract_turn("We decided to use Postgres for the billing service.", name="Bo")[0]
    assert "decision" in decision.tags and "Postgres" in decision.entities and decision.kind is Kind.fact
    plan = extract_turn("I'm going to run the Berlin marathon on 12 May 2025.", name="Bo")[0]
    assert "plan" in plan.tags and "date" in plan.tags and plan.dates == ["12 May 2025"] and "Berlin" in plan.entities
    money = extract_turn("The new laptop cost $1,299 and weighs 1.4 kg.", name="Bo")[0]
    assert "quantity" in money.tags and money.quantities == ["$1,299", "1.4 kg"]
    event = extract_turn("I went to a support group yesterday.", name="Bo")[0]
    assert event.kind is Kind.episode and {"event", "date"} <= set(event.tags)


@pytest.mark.parametrize(
    ("text", "slot", "value"),
    [
        ("I live in Lyon now.", "ana|lives in", "lyon"),
        ("I work at Globex Corporation.", "ana|works at", "globex corporation"),
        ("My favourite colour is dark green.", "ana|favourite colour", "dark green"),
        ("My favorite colour is blue.", "ana|favourite colour", "blue"),
        ("My editor is Helix these days", "ana|editor", "helix these days"),
    ],
)
def test_single_valued_statements_name_a_slot(text: str, slot: str, value: str) -> None:
    fact = extract_turn(text, name="Ana")[0]
    assert (fact.slot, fact.value) == (slot, value)


def test_without_a_name_the_role_speaks() -> None:
    assert contents("I prefer short answers with examples.", name=None) == ["User prefers short answers with examples."]


def test_the_per_turn_limit_keeps_the_most_informative_in_order() -> None:
    text = " ".join(f"I visited city number {i} in Spain." for i in range(12))
    facts = extract_turn(text, name="Ana", limit=3)
    assert len(facts) == 3
    positions = [text.index(f.content.replace("Ana", "I")) for f in facts]
    assert positions == sorted(positions)
