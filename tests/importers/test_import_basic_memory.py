"""A basic-memory project folder, written the way basic-memory writes notes, imported idempotently."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CliResult

from memmesh import Memory
from memmesh.errors import InvalidInputError
from memmesh.io.importers import detect_format, import_basic_memory
from memmesh.io.importers.basic_memory import note_id, observation_id, read_note

COFFEE = """---
title: Coffee Brewing Methods
type: note
tags: [coffee, brewing]
permalink: coffee-brewing-methods
---

# Coffee Brewing Methods

Notes from a year of weekend experiments with filter coffee.

## Observations
- [method] Pour over provides more flavor clarity than French press
- [technique] Water temperature at 205°F extracts optimal compounds #brewing #temperature
- [preference] Ethiopian beans work well with lighter roasts (personal experience)
- [ ] buy a new kettle
- plain list item without any category

## Relations
- relates_to [[Coffee Bean Origins]]
- requires [[Proper Grinding Technique]]
- "is part of" [[Kitchen Projects]] (since 2024)
- contrasts_with [[Tea Brewing Methods]]

```markdown
- [example] inside a code fence: not an observation
```
"""

ORIGINS = """---
title: Coffee Bean Origins
type: note
permalink: coffee/coffee-bean-origins
tags: coffee, origins
created: 2024-05-01
---

# Coffee Bean Origins

## Observations
- [fact] Ethiopia is where coffee was first found #history
- [fact] Colombian beans are usually washed

See also [[Coffee Brewing Methods]].
"""

GRINDING = """---
title: Proper Grinding Technique
type: Guide
---

- [tip] Use a burr grinder for an even grind
- replaces [[Blade Grinding]]
"""

KITCHEN = """# Kitchen Projects

No front matter here: basic-memory takes the title from the file name.

- [project] Coffee corner by the window #home
"""

BROKEN_YAML = """---
title: Broken
tags: [unclosed
---

- [fact] this note's front matter is not valid YAML
"""

UNCLOSED = """---
title: Never closed
- [fact] the front matter has no second --- line
"""

NOTES = {
    "coffee-brewing-methods.md": COFFEE,
    "coffee/Coffee Bean Origins.md": ORIGINS,
    "guides/Proper Grinding Technique.md": GRINDING,
    "Kitchen Projects.md": KITCHEN,
}
BROKEN = {"broken.md": BROKEN_YAML, "drafts/unclosed.md": UNCLOSED}
GOOD_NOTES = len(NOTES)
OBSERVATIONS = 3 + 2 + 1 + 1


def write_project(root: Path, notes: dict[str, str]) -> Path:
    for name, text in notes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "basic-memory", {**NOTES, **BROKEN})
    (root / "latin1.md").write_bytes("---\ntitle: Caf\xe9\n---\n".encode("latin-1"))
    hidden = root / ".obsidian"
    hidden.mkdir()
    (hidden / "workspace.md").write_text("---\ntitle: hidden\n---\n", encoding="utf-8")
    return root


def test_notes_observations_relations_become_memories_tags_and_links(mem: Memory, project: Path) -> None:
    report = import_basic_memory(mem.service, project, principal=mem.principal)
    assert report.format == "basic-memory"
    assert report.totals.added == GOOD_NOTES + OBSERVATIONS
    failures = {f.id: f.reason for f in report.failures}
    assert set(failures) == {"broken.md", "drafts/unclosed.md", "latin1.md"}
    assert "front matter is not valid YAML" in failures["broken.md"]
    assert "never closed" in failures["drafts/unclosed.md"] and "not UTF-8" in failures["latin1.md"]
    # two relations name notes that are not in the project: skipped with the reason, not failed
    assert report.skipped_reasons == {"relation target is not a note in the project": 2}

    coffee = mem.get(note_id("coffee-brewing-methods", "basic-memory"))
    assert coffee.namespace == "basic-memory"
    assert coffee.content.startswith("Coffee Brewing Methods\n\nNotes from a year of weekend experiments")
    assert "Pour over" not in coffee.content and "[[" not in coffee.content  # observations and relations are their own records
    assert {"entity", "alias:coffee brewing methods", "note", "coffee", "brewing"} <= set(coffee.tags)
    relations = coffee.metadata["relations"]
    assert {"type": "is part of", "target": "Kitchen Projects", "context": "since 2024"} in relations
    assert {"type": "contrasts_with", "target": "Tea Brewing Methods"} in relations
    assert coffee.metadata["imported_from"]["file"] == "coffee-brewing-methods.md"

    links = {(link.target_id, link.relation.value) for link in mem.links(coffee.id) if link.source_id == coffee.id}
    assert (note_id("coffee/coffee-bean-origins", "basic-memory"), "related_to") in links
    assert (note_id("guides/proper-grinding-technique", "basic-memory"), "related_to") in links  # "requires": no memmesh relation
    assert (note_id("kitchen-projects", "basic-memory"), "part_of") in links  # "is part of" maps onto part_of

    note = read_note(project / "coffee-brewing-methods.md", "coffee-brewing-methods.md")
    technique = next(o for o in note.observations if o.category == "technique")
    memory = mem.get(observation_id("coffee-brewing-methods", technique, "basic-memory"))
    assert memory.content == "Coffee Brewing Methods: Water temperature at 205°F extracts optimal compounds #brewing #temperature"
    assert set(memory.tags) == {"technique", "brewing", "temperature"}
    assert (coffee.id, "part_of") in {(link.target_id, link.relation.value) for link in mem.links(memory.id)}
    preference = next(o for o in note.observations if o.category == "preference")
    assert mem.get(observation_id("coffee-brewing-methods", preference, "basic-memory")).metadata["context"] == "personal experience"
    assert len(note.observations) == 3  # the task box, the plain item and the fenced example are not observations

    origins = mem.get(note_id("coffee/coffee-bean-origins", "basic-memory"))
    assert set(origins.metadata["tags"]) == {"coffee", "origins"}  # comma-separated tags
    back = {(link.target_id, link.relation.value) for link in mem.links(origins.id) if link.source_id == origins.id}
    assert (coffee.id, "mentions") in back  # an inline [[link]] in prose
    grinding = mem.get(note_id("guides/proper-grinding-technique", "basic-memory"))
    assert "guide" in grinding.tags and grinding.metadata["entity_type"] == "Guide"
    kitchen = mem.get(note_id("kitchen-projects", "basic-memory"))
    assert kitchen.metadata["entity"] == "Kitchen Projects"  # title from the file name

    hits = mem.recall("which water temperature for brewing coffee", namespace="basic-memory").hits
    assert memory.id in [hit.memory.id for hit in hits]
    assert report.spot_check is not None and report.spot_check.found == report.spot_check.sampled == 3


def test_rerun_writes_nothing_and_an_edit_updates_only_that_note(mem: Memory, project: Path) -> None:
    first = import_basic_memory(mem.service, project, principal=mem.principal)
    again = import_basic_memory(mem.service, project, principal=mem.principal)
    assert again.written == 0 and again.totals.skipped >= GOOD_NOTES + OBSERVATIONS
    assert again.skipped_reasons["already imported"] == GOOD_NOTES + OBSERVATIONS
    assert mem.stats().total == first.totals.added

    path = project / "guides" / "Proper Grinding Technique.md"
    path.write_text(GRINDING + "- [tip] Grind right before brewing #freshness\n", encoding="utf-8")
    third = import_basic_memory(mem.service, project, principal=mem.principal)
    assert (third.totals.added, third.totals.updated) == (1, 0)
    assert third.totals.links_written == 1  # the new observation's part_of link
    assert mem.stats().total == first.totals.added + 1


def test_dry_run_writes_nothing(mem: Memory, project: Path) -> None:
    report = import_basic_memory(mem.service, project, dry_run=True, principal=mem.principal)
    assert report.dry_run and report.totals.added == GOOD_NOTES + OBSERVATIONS
    assert mem.stats().total == 0


def test_auto_detects_a_project_folder_and_refuses_other_folders(tmp_path: Path, project: Path) -> None:
    assert detect_format(str(project), table=None, read_text=lambda: "") == "basic-memory"
    empty = tmp_path / "empty"
    empty.mkdir()
    plain = write_project(tmp_path / "plain", {"README.md": "# Just a readme\n\nSome prose.\n"})
    with pytest.raises(InvalidInputError, match="holds no Markdown notes"):
        detect_format(str(empty), table=None, read_text=lambda: "")
    with pytest.raises(InvalidInputError, match="none of its Markdown files has front matter"):
        detect_format(str(plain), table=None, read_text=lambda: "")


def test_front_matter_that_expands_through_aliases_fails_that_note_only(mem: Memory, tmp_path: Path) -> None:
    laughs = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    laughs += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
    root = write_project(tmp_path / "p", {"laughs.md": "---\n" + "\n".join(laughs) + "\n---\n", "ok.md": "---\ntitle: Fine\n---\n"})
    started = time.monotonic()
    report = import_basic_memory(mem.service, root, principal=mem.principal)
    assert time.monotonic() - started < 10
    assert report.totals.added == 1 and [f.id for f in report.failures] == ["laughs.md"]
    assert "expands to more than 10000 values" in report.failures[0].reason


def test_duplicate_permalinks_fail_the_second_file(mem: Memory, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"a.md": "---\ntitle: A\npermalink: same\n---\n", "b.md": "---\ntitle: B\npermalink: same\n---\n"})
    report = import_basic_memory(mem.service, root, principal=mem.principal)
    assert report.totals.added == 1 and [(f.id, f.reason) for f in report.failures] == [
        ("b.md", "permalink 'same' is already used by a.md")
    ]


def test_a_link_to_a_file_outside_the_project_fails_and_is_not_read(mem: Memory, tmp_path: Path) -> None:
    secret = tmp_path / "outside.md"
    secret.write_text("---\ntitle: Secret\n---\nTOP SECRET OUTSIDE\n")
    root = write_project(tmp_path / "p", {"ok.md": "---\ntitle: Fine\n---\n", "inside.md": "---\ntitle: Inside\n---\n"})
    (root / "link.md").symlink_to(secret)
    (root / "alias.md").symlink_to(root / "inside.md")  # a link within the project is a note as any other
    report = import_basic_memory(mem.service, root, principal=mem.principal)
    assert [(f.id, f.reason) for f in report.failures] == [("link.md", "a symbolic link to a file outside the project folder: not read")]
    assert not mem.search("SECRET") and report.totals.added == 3


def test_two_notes_with_one_title_stay_two_and_the_first_holds_the_name(mem: Memory, tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p",
        {
            "a/Meeting.md": "---\ntitle: Meeting\n---\n- [fact] the first meeting\n",
            "b/Meeting.md": "---\ntitle: Meeting\n---\n- [fact] the second meeting\n",
        },
    )
    first = import_basic_memory(mem.service, root, principal=mem.principal)
    assert first.totals.added == 4 and first.totals.links_written == 2
    a, b = mem.get(note_id("a/meeting", "basic-memory")), mem.get(note_id("b/meeting", "basic-memory"))
    assert "alias:meeting" in a.tags and "alias:meeting" not in b.tags
    again = import_basic_memory(mem.service, root, principal=mem.principal)
    assert again.written == 0 and again.skipped_reasons == {"already imported": 4}
    (root / "b" / "Meeting.md").write_text("---\ntitle: Meeting\ntags: [edited]\n---\n- [fact] the second meeting\n")
    third = import_basic_memory(mem.service, root, principal=mem.principal)
    assert third.totals.updated == 1 and "edited" in mem.get(b.id).tags  # an edit of the second note is not lost


def _json(result: CliResult) -> Any:
    assert result.out, result.err
    return json.loads(result.out)


def test_cli_imports_a_project_and_refuses_a_non_project_writing_nothing(cli, project: Path, tmp_path: Path) -> None:
    first = cli("import", str(project), "--format", "basic-memory", "--json")
    report = _json(first)
    assert first.code == 1  # malformed notes failed: exit 1, each listed with its file and reason
    assert report["totals"]["added"] == GOOD_NOTES + OBSERVATIONS and report["totals"]["failed"] == 3

    again = cli("import", str(project), "-n", "basic-memory")  # --format auto detects the folder
    assert "wrote: 0 added, 0 updated, 0 deleted, 0 links" in again.out
    assert "failed broken.md (tenant basic-memory): front matter is not valid YAML" in again.err

    ok = write_project(tmp_path / "ok", NOTES)
    clean = cli("--db", str(tmp_path / "other.db"), "import", str(ok), "-n", "kb")
    assert clean.code == 0 and f"wrote: {GOOD_NOTES + OBSERVATIONS} added" in clean.out

    plain = write_project(tmp_path / "plain", {"notes.md": "just text\n"})
    for source, expected in (
        (str(plain), "is not a basic-memory project"),
        (str(tmp_path / "missing-dir"), "no such"),
        (str(project / "broken.md"), "takes the project folder"),
    ):
        bad = cli("--db", str(tmp_path / "bad.db"), "import", source, "--format", "basic-memory")
        assert bad.code != 0 and expected in bad.err and "Traceback" not in bad.err
        assert len(bad.err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.db").exists()  # a refused import creates no store
