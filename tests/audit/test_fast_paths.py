"""The audit's hand-written encoders are byte-for-byte the JSON they replace (issue 24: audit
overhead per write). Entry hashes already stored were computed with ``json.dumps``; if the
fast encoders differed by one byte for any input, old logs would stop verifying, so the
equality is checked over arbitrary text (quotes, control characters, non-ASCII, astral
characters) and both ``None`` and text for the optional fields."""

from __future__ import annotations

import json
from datetime import UTC

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.audit import chain
from memmesh.audit.log import _stamp
from memmesh.audit.notes import CheckpointFile
from memmesh.audit.verify import verify_log
from memmesh.clock import format_ts

text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
optional = st.none() | text


def reference(idx: int, at: str, actor: str, action: str, namespace: str | None, target: str | None, detail: str) -> bytes:
    """The original definition of an entry's canonical bytes."""
    return json.dumps([idx, at, actor, action, namespace, target, detail], separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=2**63 - 1), text, text, text, optional, optional, text)
def test_canonical_is_the_json_array_byte_for_byte(idx, at, actor, action, namespace, target, detail):
    assert chain.canonical(idx, at, actor, action, namespace, target, detail) == reference(
        idx, at, actor, action, namespace, target, detail
    )


def test_canonical_covers_the_characters_json_escapes():
    tricky = '"\\\n\r\t\x00\x1f\x7f é 漢 \U0001f600 \u2028\u2029 </script>'
    assert chain.canonical(1, tricky, tricky, tricky, tricky, None, tricky) == reference(1, tricky, tricky, tricky, tricky, None, tricky)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    st.none() | st.lists(text, max_size=8).map(sorted),
    st.sampled_from([1, 2, 3, 10]),
)
def test_history_detail_is_detail_text_of_the_same_dict(digest, fields, rule):
    """Rule 1 details (every entry written before rule 2) have no ``rule`` key."""
    expected = {"digest": digest} if fields is None else {"digest": digest, "fields": fields}
    if rule != 1:
        expected["rule"] = rule
    assert chain.history_detail(digest, fields, rule) == chain.detail_text(expected)


@pytest.mark.parametrize(
    "row",
    [
        ("0", "at", "actor", "action", None, None, "{}", "00" * 32),  # index stored as text
        (True, "at", "actor", "action", None, None, "{}", "00" * 32),  # a bool is not an index
        (0, "at", "actor", "action", None, None, 5, "00" * 32),  # detail retyped to a number
        (0, "at", b"actor", "action", None, None, "{}", "00" * 32),  # a blob where text belongs
    ],
)
def test_a_retyped_row_is_a_modified_entry_not_a_crash(row):
    """SQLite keeps whatever type is written: a row an attacker retyped is reported at its
    index, as any other change, instead of stopping the verifier with a TypeError."""
    report = verify_log([row], None, CheckpointFile([], [], False), None)
    assert not report.ok
    assert report.first_bad_index == 0
    assert report.problems[0].kind in ("modified", "out_of_order", "missing")


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones()))
def test_the_append_timestamp_is_format_ts(moment):
    assert _stamp(moment) == format_ts(moment)
