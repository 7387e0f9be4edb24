"""Hostile values through the CLI (issue 12): one ``error:`` line naming what to fix, exit
code 2 (a flag's value the core refuses is a usage error), no traceback, nothing stored — the same rules as HTTP and MCP, because they live
in the core."""

from __future__ import annotations

import pytest

BAD_STORES = [
    (["store", "x", "--namespace", "a/../b"], "'.' or '..'"),
    (["store", "x", "--namespace", "team/."], "'.' or '..'"),
    (["store", "x", "--ttl", str(10**12)], "error: --ttl: "),  # out of range: a usage error, exit 2
    (["store", "x", "--valid-from", "0"], "error: --valid-from: "),
    (["store", "x", "--valid-to", "1700000000"], "error: --valid-to: "),
    (["store", "x", "--valid-from", "0001-01-01T00:00:00+23:00"], "error: --valid-from: "),
    (["store", "x", "--source", "s" * 300], "error: --source: "),
    (["list", "--since", "0001-01-01T00:00:00+23:00"], "error: --since '0001"),  # out of range: exit 2
    (["list", "--namespace", "../../etc"], "'.' or '..'"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_STORES)
def test_hostile_cli_values_are_one_clear_line(cli, args: list[str], expected: str) -> None:
    assert cli("init").code == 0  # an existing store: reads on a missing one stop at that first
    result = cli(*args)
    assert result.code == 2, (result.out, result.err)
    assert result.err.startswith("error: ") and expected in result.err and "Traceback" not in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert cli("list", "--json").out.count('"id"') == 0  # nothing stored


def test_nul_in_piped_content_is_refused(cli) -> None:
    assert cli("init").code == 0
    result = cli("store", "-", input="before\x00after")
    assert result.code == 1 and "NUL" in result.err and "content" in result.err
    assert cli("list", "--json").out.count('"id"') == 0
