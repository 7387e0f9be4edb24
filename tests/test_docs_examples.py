"""Every example in README.md and docs/*.md runs, in page order, against a fresh store.

The harness and its conventions (ports, keys, markers) are in :mod:`tests.docs_support`;
a failure names ``page:line``. The only way not to run an example is a
``<!-- docs-test: skip REASON -->`` marker right above it in the page.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.docs_support import PAGES, ROOT, DocsError, collect, run_page
from tests.docs_support_fixtures import PAGE_SETUP


@pytest.mark.slow  # long: started first (tests/conftest.py)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_on_the_page_runs(page: Path) -> None:
    failures, skipped = run_page(page, PAGE_SETUP.get(page.name))
    print("\n".join(["skipped (marked in the page):", *skipped]) if skipped else "nothing skipped")
    assert not failures, "examples that break:\n" + "\n".join(str(f) for f in failures)


def test_pages_follow_the_marker_conventions() -> None:
    """A stray, unknown or reason-less marker is an error, not a silent skip."""
    problems = []
    for page in PAGES:
        try:
            collect(page)
        except DocsError as exc:
            problems.append(str(exc))
    assert problems == []


def test_the_collector_refuses_bad_markers(tmp_path: Path) -> None:
    import tests.docs_support as support

    cases = {
        "unknown kind": "<!-- docs-test: skipp because -->\n```bash\necho\n```\n",
        "no reason": "<!-- docs-test: skip -->\n```bash\necho\n```\n",
        "not above a fence": "<!-- docs-test: skip reason -->\n\ntext\n```bash\necho\n```\n",
        "unclosed": "```bash\necho\n",
        "untagged fence": "```\necho\n```\n",
        "unknown language": "```yaml\na: 1\n```\n",
    }
    for name, text in cases.items():
        page = support.ROOT / f"_docs_collector_case_{tmp_path.name}.md"
        page.write_text(text)
        try:
            with pytest.raises(DocsError):
                collect(page)
        finally:
            page.unlink()
        assert name


def test_a_broken_example_fails_with_page_and_line(tmp_path: Path) -> None:
    """The harness is not a test that cannot fail: each kind of example can break."""
    import tests.docs_support as support

    text = (
        "# t\n\n```bash\necho fine\nmemmesh get no-such-id\n```\n\n"
        '```python\nimport memmesh\nraise ValueError("boom")\n```\n\n'
        "```toml\n[storage]\nulr = 'x'\n```\n\n"
        '```json\n{"a": 1,}\n```\n\n'
        "<!-- docs-test: validate memmesh.interfaces.http.schemas.ErrorBody -->\n"
        '```json\n{"error": {"code": "x", "message": "y", "details": {}, "extra": 1}}\n```\n'
    )
    page = support.ROOT / f"_docs_harness_case_{tmp_path.name}.md"
    page.write_text(text)
    try:
        failures, _ = run_page(page)
    finally:
        page.unlink()
    where = [f.where for f in failures]
    assert where == [f"{page.name}:{n}" for n in (4, 9, 14, 19, 24)], failures
    assert "page line 5" in failures[0].message and "page line 10" in failures[1].message


def _gen_docs():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_reference_sections_are_up_to_date() -> None:
    """CLI help, settings, HTTP routes and MCP tools in docs/ are what the code says today."""
    gen = _gen_docs()
    stale = sorted(str(page.relative_to(ROOT)) for page in gen.stale_pages())
    assert stale == [], f"generated sections are stale in {stale}; run `{gen.COMMAND}` and commit the result"


def test_a_stale_region_is_detected() -> None:
    gen = _gen_docs()
    page = ROOT / "docs" / "configuration.md"
    text = page.read_text(encoding="utf-8")
    edited = text.replace("| `storage.pool_size` |", "| `storage.pool_sise` |")
    assert edited != text
    assert gen.render(page, edited, {}) == gen.render(page, text, {}) == text
