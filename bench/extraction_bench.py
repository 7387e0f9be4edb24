"""Fact extraction on LoCoMo (dev split): throughput, facts per turn, and R@k over the facts only.

Protocol (issue 23; data as in ``/work/shared/bench-data/README.md``):

1. every session of every conversation is remembered through the public API,
   ``Memory.add(messages=[{"role", "name": speaker, "content"}…], session_id=…,
   namespace="locomo/<sample>")`` (image turns carry ``" [image: <caption>]"``): the turns
   are stored as session turns, the extracted facts beside them, each linked
   ``derived_from`` its turns;
2. each question (categories 1-4, non-empty evidence) is recalled from its conversation's
   **extracted facts only** (``tags=["extracted"]``: no turn can be a hit);
3. a hit counts for the evidence turns it is ``derived_from``; recall@k = |evidence ∩
   turns of the top-k facts| / |evidence|, averaged over the questions.

Also measured: the offline extractor alone (pure function, one thread) in turns/s — the
target is ≥ 500 turns/s on 2 cores — and end to end (turns + facts + links stored) in
turns/s; facts per turn; and coverage (the share of evidence turns that yielded a fact at
all, the ceiling of any recall over facts).

With ``--llm-base-url`` (an OpenAI-compatible server, e.g. Ollama's http://127.0.0.1:11434/v1;
set through ``[llm] base_url``/``model`` like any install) the extraction uses that LLM
(offline fallback per batch) and the report says so. ``--fake-llm`` starts the test suite's
fake server (tests/fake_openai.py) and extracts through it: a smoke run of the whole LLM
path (schema, repairs, fallback, report), whose recall numbers say nothing about any model.

Run from the repository root::

    python bench/extraction_bench.py [--embeddings none|minilm] [--llm-base-url URL --llm-model M] [--fake-llm]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from memmesh import Memory  # noqa: E402 - needs the src path above
from memmesh.config import load_settings  # noqa: E402
from memmesh.extraction.offline import extract_turn  # noqa: E402
from memmesh.model import Relation  # noqa: E402
from recall_quality import CATEGORIES, DEFAULT_DATA, KS, normalise_evidence  # noqa: E402


@dataclass
class Session:
    session_id: str
    messages: list[dict[str, str]]
    dia_ids: list[str]


@dataclass
class Conv:
    sample: str
    namespace: str
    sessions: list[Session] = field(default_factory=list)
    questions: list[tuple[str, int, set[str]]] = field(default_factory=list)


def load(path: Path) -> list[Conv]:
    convs = []
    for sample in json.loads(path.read_text(encoding="utf-8")):
        conv = Conv(sample["sample_id"], f"locomo/{sample['sample_id']}")
        dialog = sample["conversation"]
        numbers = sorted(int(k.split("_")[1]) for k in dialog if k.startswith("session_") and k.split("_")[1].isdigit() and "date" not in k)
        known: set[str] = set()
        for number in numbers:
            messages, ids = [], []
            for turn in dialog[f"session_{number}"]:
                text = turn["text"] + (f" [image: {turn['blip_caption']}]" if turn.get("blip_caption") else "")
                role = "user" if turn["speaker"] == dialog["speaker_a"] else "assistant"
                messages.append({"role": role, "name": turn["speaker"], "content": text})
                ids.append(turn["dia_id"])
                known.add(turn["dia_id"])
            conv.sessions.append(Session(f"{conv.sample}-s{number}", messages, ids))
        for qa in sample["qa"]:
            if qa.get("category") in CATEGORIES:
                evidence = normalise_evidence(qa.get("evidence") or [], known)
                if evidence:
                    conv.questions.append((qa["question"], qa["category"], evidence))
        convs.append(conv)
    return convs


def offline_throughput(convs: list[Conv], rounds: int = 3) -> dict[str, float]:
    """The extractor alone: best of ``rounds`` passes over every turn, one thread."""
    turns = [m for c in convs for s in c.sessions for m in s.messages]
    best = float("inf")
    facts = 0
    for _ in range(rounds):
        start = time.perf_counter()
        facts = sum(len(extract_turn(m["content"], role=m["role"], name=m["name"], index=i)) for i, m in enumerate(turns))
        best = min(best, time.perf_counter() - start)
    return {"turns": len(turns), "facts": facts, "seconds": round(best, 3), "turns_per_s": round(len(turns) / best, 1)}


def settings(workdir: Path, embeddings: str, llm_url: str | None, llm_model: str) -> Any:
    (workdir / "empty.toml").write_text("")
    overrides: dict[str, Any] = {"data_dir": str(workdir), "embeddings": {"provider": embeddings}}
    if llm_url:
        overrides["llm"] = {"base_url": llm_url, "model": llm_model, "timeout_s": 120}
    return load_settings(workdir / "empty.toml", overrides=overrides, env={})


def run(data: Path, workdir: Path, embeddings: str, llm_url: str | None, llm_model: str, max_convs: int | None = None) -> dict[str, Any]:
    convs = load(data)[:max_convs]
    pure = offline_throughput(convs)
    totals: dict[str, Any] = defaultdict(int)
    failures: list[str] = []
    turn_dia: dict[str, str] = {}
    facts_of_dia: dict[str, int] = defaultdict(int)
    with Memory(f"sqlite:///{workdir / 'extract.db'}", settings(workdir, embeddings, llm_url, llm_model)) as mem:
        if mem.service.embedder is not None:
            mem.service.embedder.embed(["load the model"])
        start = time.perf_counter()
        for conv in convs:
            for session in conv.sessions:
                result = mem.add(messages=session.messages, session_id=session.session_id, namespace=conv.namespace)
                report = result.report
                assert report is not None
                for turn, dia in zip(result.turns, session.dia_ids, strict=True):
                    turn_dia[turn.memory_id] = dia
                for key in ("turns", "extracted", "merged", "superseded", "contradicted", "fallback", "repairs"):
                    totals[key] += getattr(report, key)
                failures.extend(f.reason for f in report.failed)
        elapsed = time.perf_counter() - start
        mode = mem.service.extraction.mode
        sources: dict[str, set[str]] = {}

        def dia_of(fact_id: str) -> set[str]:
            if fact_id not in sources:
                links = mem.links(fact_id)
                sources[fact_id] = {
                    turn_dia[link.target_id]
                    for link in links
                    if link.source_id == fact_id and link.relation is Relation.derived_from and link.target_id in turn_dia
                }
            return sources[fact_id]

        per_cat: dict[int, list[list[float]]] = defaultdict(list)
        latencies = []
        for conv in convs:
            for text, category, evidence in conv.questions:
                t0 = time.perf_counter()
                hits = mem.recall(text, namespace=conv.namespace, tags=["extracted"], top_k=max(KS), touch=False).hits
                latencies.append((time.perf_counter() - t0) * 1000)
                ranked = [dia_of(h.memory.id) for h in hits]
                per_cat[category].append([_recall_at(ranked, evidence, k) for k in KS])
        fact_ids = {fid for fid in sources}
        page = mem.list(limit=1000, tags=["extracted"])
        all_facts = list(page.items)
        while page.next_cursor:
            page = mem.list(limit=1000, tags=["extracted"], cursor=page.next_cursor)
            all_facts.extend(page.items)
        for fact in all_facts:
            for dia in dia_of(fact.id):
                facts_of_dia[dia] += 1
        fact_ids |= {f.id for f in all_facts}
        recall_mode = mem.recall("warm", top_k=1, touch=False).mode
    evidence_turns = {d for c in convs for _q, _c, ev in c.questions for d in ev}
    everything = [row for rows in per_cat.values() for row in rows]
    return {
        "benchmark": "extraction",
        "data": str(data),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "extractor": mode,
        "llm": {"url": llm_url, "model": llm_model} if llm_url else None,
        "recall_mode": recall_mode,
        "offline_extractor": pure,
        "end_to_end": {
            "turns": totals["turns"],
            "seconds": round(elapsed, 2),
            "turns_per_s": round(totals["turns"] / elapsed, 1),
            "note": "turns + facts stored (one batch each per session), links written, embedding included when on",
        },
        "facts": {
            "stored": len(fact_ids),
            "per_turn": round(len(fact_ids) / max(1, totals["turns"]), 3),
            **{k: totals[k] for k in ("extracted", "merged", "superseded", "contradicted", "fallback", "repairs")},
            "failures": len(failures),
            "failure_examples": failures[:5],
        },
        "coverage": {
            "evidence_turns": len(evidence_turns),
            "with_a_fact": sum(1 for d in evidence_turns if facts_of_dia.get(d)),
            "share": round(100 * sum(1 for d in evidence_turns if facts_of_dia.get(d)) / max(1, len(evidence_turns)), 1),
        },
        "recall_over_facts": {
            "overall": _block(everything),
            "by_category": {f"{c}-{CATEGORIES[c]}": _block(per_cat[c]) for c in sorted(per_cat)},
            "query_ms_p50": round(statistics.median(latencies), 2) if latencies else None,
        },
    }


def _recall_at(ranked: list[set[str]], evidence: set[str], k: int) -> float:
    seen: set[str] = set().union(*ranked[:k]) if ranked else set()
    return len(evidence & seen) / len(evidence)


def _block(rows: list[list[float]]) -> dict[str, float]:
    if not rows:
        return {"n": 0}
    return {f"r@{k}": round(100 * statistics.fmean(r[i] for r in rows), 1) for i, k in enumerate(KS)} | {"n": len(rows)}


def fake_llm() -> Any:
    """The test suite's fake OpenAI server, answering like a diligent but imperfect model:
    one fact per turn of four words or more (the turn, its speaker named), and every fifth
    request a broken JSON reply first, so the repair prompt is exercised too."""
    sys.path.insert(0, str(ROOT))
    from tests.fake_openai import FakeOpenAI, Reply  # only the smoke run needs the test server

    server = FakeOpenAI()
    count = {"n": 0}

    def answer(body: dict[str, Any]) -> Any:
        count["n"] += 1
        if count["n"] % 5 == 0 and body["messages"][-1]["content"].startswith("[turn"):
            return Reply(content='{"facts": [{"turn": 1, "content": "broken')
        batch = next(m["content"] for m in body["messages"] if m["role"] == "user")
        facts = []
        for line in batch.splitlines():
            head, _, text = line.partition("] ")
            speaker, _, said = text.partition(": ")
            if head.startswith("[turn ") and len(said.split()) >= 4:
                content = f"{speaker} said: {said}"[:600]
                facts.append({"turn": int(head[6:]), "content": content, "kind": "fact", "tags": ["said"]})
        return Reply(content=json.dumps({"facts": facts}))

    server.default = answer
    return server.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LoCoMo-format JSON file")
    parser.add_argument("--embeddings", choices=("none", "minilm"), default="none", help="embedder for the facts (none = keyword recall)")
    parser.add_argument(
        "--llm-base-url", "--llm-url", dest="llm_url", help="OpenAI-compatible API root to extract with ([llm] base_url; default: offline)"
    )
    parser.add_argument("--llm-model", default="llama3.1:8b", help="[llm] model")
    parser.add_argument("--fake-llm", action="store_true", help="smoke run through the test suite's fake LLM server (tests/fake_openai.py)")
    parser.add_argument("--max-convs", type=int, help="only the first N conversations (a short smoke run)")
    parser.add_argument("--out", type=Path, help="where to write JSON (default bench/results/extraction_<embeddings>.json)")
    args = parser.parse_args()
    server = fake_llm() if args.fake_llm else None
    if server is not None:
        args.llm_url, args.llm_model = server.url, "fake"
    suffix = "_fakellm" if server is not None else "_llm" if args.llm_url else ""
    out = args.out or ROOT / f"bench/results/extraction_{args.embeddings}{suffix}.json"
    try:
        with tempfile.TemporaryDirectory(prefix="memmesh-extract-") as tmp:
            report = run(args.data, Path(tmp), args.embeddings, args.llm_url, args.llm_model, args.max_convs)
    finally:
        if server is not None:
            report_requests = len(server.requests)
            server.stop()
    if server is not None:
        report["llm"]["fake"] = True
        report["llm"]["requests"] = report_requests
    pure, e2e, facts, rec = report["offline_extractor"], report["end_to_end"], report["facts"], report["recall_over_facts"]
    print(f"extractor {report['extractor']}, recall {report['recall_mode']}")
    print(f"offline extractor alone: {pure['turns']} turns in {pure['seconds']} s = {pure['turns_per_s']} turns/s (target >= 500)")
    print(f"end to end (store turns, facts, links): {e2e['turns_per_s']} turns/s ({e2e['seconds']} s)")
    print(f"facts: {facts['stored']} stored, {facts['per_turn']} per turn; {facts['failures']} failures")
    print(
        f"merged {facts['merged']}, superseded {facts['superseded']}, contradicted {facts['contradicted']}; "
        f"LLM repairs {facts['repairs']}, fallback turns {facts['fallback']}{'; llm ' + json.dumps(report['llm']) if report['llm'] else ''}"
    )
    print(f"coverage: {report['coverage']['with_a_fact']} of {report['coverage']['evidence_turns']} evidence turns have a fact")
    print(f"recall over facts only: {rec['overall']}")
    for cat, block in rec["by_category"].items():
        print(f"  {cat:<14} {block}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
