"""CLI papercuts from new-user trials: what a narrow terminal shows, counts in words, what
restore says of agents, a full disk under ``export -o``, usage errors and a lost port race."""

from __future__ import annotations

import json
import re

from tests.conftest import CliResult

UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _flat(result: CliResult) -> str:
    return " ".join(result.out.split())


def test_recall_and_list_on_80_columns_show_the_content_and_an_id_get_accepts(cli) -> None:
    text = "The deployment pipeline runs nightly at 02:00 UTC and posts its summary to the ops channel"
    stored = cli("store", text, "-n", "team/ops", "-t", "deploy,ci", "--json")
    assert stored.code == 0, stored.err
    for args in (("recall", "deployment pipeline"), ("search", "pipeline"), ("list",), ("recall", "pipeline", "--explain")):
        shown = cli(*args, extra_env={"COLUMNS": "80"})
        assert shown.code == 0, shown.err
        assert max(len(line) for line in shown.out.splitlines()) <= 80, shown.out
        assert text in _flat(shown), shown.out  # the whole sentence, not "The deployment pip…"
        assert UUID.findall(shown.out) == [json.loads(stored.out)["id"]], shown.out  # whole, on one line
    got = cli("get", UUID.findall(shown.out)[0])  # copied from the output
    assert got.code == 0 and text in got.out
    wide = cli("recall", "deployment pipeline", extra_env={"COLUMNS": "200"})
    assert "┃ content" in wide.out and text[:60] in wide.out  # a wide terminal keeps the table
