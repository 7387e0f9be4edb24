"""The element-count guard (413 for an array or object of more than MAX_JSON_ITEMS elements)
clears a body with too few commas to hold that many without parsing it, and parses the rest:
whatever its strings hold, in whatever encoding json reads, it never misses a wide one."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.interfaces.http import middleware
from memmesh.interfaces.http.middleware import _has_commas, _too_wide

LIMIT = 3  # elements; the guard's real limit is 10,000, too many for a readable case


@pytest.fixture(autouse=True)
def _small_limit(monkeypatch):
    monkeypatch.setattr(middleware, "MAX_JSON_ITEMS", LIMIT)


def widest(value: Any) -> int:
    """The element count of the widest array or object in ``value`` (0 for a scalar)."""
    if isinstance(value, dict):
        return max([len(value), *(widest(v) for v in value.values())])
    if isinstance(value, list):
        return max([len(value), *(widest(v) for v in value)])
    return 0


TRICKY_TEXT = st.text(alphabet=st.sampled_from(list('[]{},:"\\ \n\tab\u00e9\u2c5b\U0001f600')), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(TRICKY_TEXT, inner, max_size=6),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=JSON_VALUES, indent=st.sampled_from([None, 0, 2]), ascii_only=st.booleans(), encoding=st.sampled_from(["utf-8", "utf-16"]))
def test_a_body_is_too_wide_exactly_when_an_array_or_object_in_it_is(value, indent, ascii_only, encoding):
    body = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode(encoding)
    refusal = _too_wide(body)
    assert (refusal is not None) == (widest(value) > LIMIT)
    if refusal is not None:
        told = re.search(r"holds an? (?:array|object) of (\d+) elements", refusal.reason)
        assert told is not None and LIMIT < int(told.group(1)) <= widest(value), refusal.reason


@pytest.mark.parametrize(
    "body",
    [
        '["a,b,c,d,e"]',
        '["[,,,,", "]]]", "{,,,,}"]',
        r'["\"],,,,,\\", 1]',
        r'["\\", ",,,,", "\\\"]"]',
        "[[1, 2], [3, 4], [5]]",
        '{"a": [1, 2, 3], "b,c,d,e": {"x": "]]]"}}',
        " [ 1 ,\n 2 ,\t3 ] ",
        '"a long string, with, commas, and [brackets], is no array"',
    ],
)
def test_commas_and_brackets_inside_strings_are_text_not_elements(body):
    assert _too_wide(body.encode()) is None


@pytest.mark.parametrize(
    ("body", "kind", "count"),
    [
        ("[1, 2, 3, 4]", "an array of", 4),
        (' [ 1 ,\n 2 ,\t3 ,\r\n "4" ] ', "an array of", 4),
        ('[[1, 2], [["x", "y", "z", "]", "w"]]]', "an array of", 5),
        ('{"a": 1, "b": 2, "c": 3, "d": 4}', "an object of", 4),
        ('{"a": {"b": {"c": [1, 2, 3, 4]}}}', "an array of", 4),
        (r'["\"", "\\", "\\\"", "[", "]"]', "an array of", 5),
    ],
)
def test_a_too_wide_array_or_object_is_found_and_told_as_before(body, kind, count):
    refusal = _too_wide(body.encode())
    assert refusal is not None and refusal.http_status == 413
    assert refusal.reason.startswith(f"the request body holds {kind} {count} elements; at most {LIMIT} fit in one")


def test_depth_does_not_hide_a_wide_array():
    thin = "[" * 40 + "1, 2" + "]" * 40
    wide = "[" * 40 + "1, 2, 3, 4" + "]" * 40
    assert _too_wide(thin.encode()) is None
    assert _too_wide(wide.encode()) is not None


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_utf16_or_utf32_body_is_counted_by_the_parse(encoding):
    """A UTF-16 character may hold a quote's or a bracket's byte: such a body is parsed."""
    wide = json.dumps(["\u225d\u5b22", 1, 2, 3], ensure_ascii=False).encode(encoding)
    assert _too_wide(wide) is not None
    assert _too_wide(json.dumps(["\u225d,,,,", 1]).encode(encoding)) is None


@pytest.mark.parametrize("body", ["[1, 2, 3, 4", "[1,,,,]", "[1, 2, 3, 4]]", '["open, 1, 2, 3, 4]', "{1, 2, 3, 4}"])
def test_a_malformed_body_is_left_to_the_route_as_before(body):
    assert _too_wide(body.encode()) is None


def test_repeated_keys_count_as_the_parse_keeps_them():
    """json.loads keeps the last of repeated keys, and so does the route: as before, not too wide."""
    assert _too_wide(b'{"a": 1, "a": 2, "a": 3, "a": 4}') is None


def test_commas_are_counted_across_chunks_and_the_count_stops_when_enough():
    assert _has_commas(b"," * 5, 5, chunk=2)
    assert not _has_commas(b"a," * 4, 5, chunk=3)
    assert _has_commas(b"a,b" * 3, 3, chunk=1)
    assert not _has_commas(b"", 1)
