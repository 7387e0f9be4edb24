"""What session 7's probe (probe3) found as a new user and an operator of the CLI: each test
fails on the code before its fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def test_a_search_or_recall_query_longer_than_a_memory_exits_1_and_names_the_limit(cli: Callable[..., Any]) -> None:
    # Before: any length was ranked (1 MB: 1-2 s of CPU; "May 5" then a long run of spaces:
    # minutes, recall/dated.py's pattern was quadratic).
    assert cli("store", "the May 5 launch went well", "-n", "dates").code == 0
    for verb in ("search", "recall"):
        done = cli(verb, "May 5" + " " * 70_000 + "!")
        assert done.code == 1, (verb, done)
        assert "query is 70006 bytes; the limit is 65536 (limits.max_content_bytes)" in done.err, done.err
    found = cli("recall", "May 5 launch" + " " * 60_000, "--json")
    assert found.code == 0, found.err
    assert [h["memory"]["content"] for h in json.loads(found.out)["hits"]] == ["the May 5 launch went well"]


def test_doctor_warns_of_a_memmesh_variable_it_never_reads(cli: Callable[..., Any]) -> None:
    # Before: a typo'd variable (MEMMESH_RECALL_DEFAULT_TOPK) was silently ignored; the
    # operator believed a setting was in force that was not.
    assert cli("init").code == 0
    done = cli("doctor", "--json", extra_env={"MEMMESH_RECALL_DEFAULT_TOPK": "3", "MEMMESH_LIMITS_MAX_PAGE_SIZE": "50"})
    assert done.code == 0, done.err  # a warning, not a failure
    report = json.loads(done.out)
    (env,) = [c for c in report["checks"] if c["name"] == "environment"]
    assert env["status"] == "warn"
    assert env["detail"] == "not memmesh settings, ignored: MEMMESH_RECALL_DEFAULT_TOPK (did you mean MEMMESH_RECALL_DEFAULT_TOP_K?)"
    assert report["config"]["limits"]["max_page_size"] == 50  # a real one is read, and not named
    clean = json.loads(cli("doctor", "--json").out)
    assert [c for c in clean["checks"] if c["name"] == "environment"] == []


def test_verify_without_a_checkpoint_says_a_cut_tail_goes_unnoticed(cli: Callable[..., Any], db_path: Any) -> None:
    # Before: the warning said only "a full rewrite would go unnoticed", and a log whose tail
    # was deleted verified ok under it: an operator read that as "cuts are caught".
    import sqlite3

    from memmesh.store.sqlite import register_functions

    for n in range(4):
        assert cli("store", f"fact {n}", "-n", "audited").code == 0
    with sqlite3.connect(db_path) as conn:
        register_functions(conn)
        conn.execute("DELETE FROM audit_log WHERE idx >= 2")
    done = cli("audit", "verify", "--json")
    report = json.loads(done.out)
    assert done.code == 0 and report["ok"] and report["entries"] == 2, done.out
    assert any("a cut tail or a full rewrite would go unnoticed" in w for w in report["warnings"]), report["warnings"]
