"""Recall quality on LoCoMo (dev split): recall@5/10/20 for keyword, vector and hybrid recall.

Protocol (``/work/shared/bench-data/README.md``): one memory per dialog turn, content
``"<speaker>: <text>"`` plus ``" [image: <blip_caption>]"`` for image turns; the session
date is the memory's world time (``valid_from``), which the ranking reads only when a
question names a date; each conversation in its own namespace; each question recalls from
its own conversation only; questions of categories 1-4 with non-empty evidence; recall@k =
|evidence ∩ top-k| / |evidence|, averaged per category and overall.

Everything goes through the public ``Memory`` API into a fresh SQLite file: ``add_many``
per conversation (embedding included in the ingest time), then ``recall`` with
``touch=False`` (so the ranking cannot learn from earlier questions via access counts and
promotion) for each mode. Nothing is cached between runs; the model's one-off load is
timed separately from the ingest.

Run from the repository root::

    python bench/recall_quality.py [--data PATH] [--out bench/results/recall_quality.json]

A lever that is a ``[recall]`` setting is measured with ``--set``, applied on top of every
row's own overrides (``--only hybrid --set coverage_weight=1.5``); with ``--workdir DIR
--reuse`` each try queries the store the first run ingested.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from memmesh import Memory  # noqa: E402 - needs the src path above
from memmesh.config import load_settings  # noqa: E402

DEFAULT_DATA = Path("/work/shared/bench-data/locomo-dev.json")
KS = (5, 10, 20)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
# (row name, recall mode, [recall] overrides; {} = the defaults). "bm25" is what `search`
# returns (keyword, no context, no coverage); "keyword" is recall on a store without an
# embedder (BM25 + write-order context between the turns, stored as kind="message"); the
# "-plain" rows switch context and coverage off; "hybrid-nocover" is the default without
# query-term coverage, "hybrid-nodate" without the named-date boost (the defaults before
# each was measured, docs/recall.md levers table).
_PLAIN = {"context_weight": 0.0, "coverage_weight": 0.0}
RUNS: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("bm25", "keyword", _PLAIN),
    ("vector-plain", "vector", _PLAIN),
    ("hybrid-plain", "hybrid", _PLAIN),
    ("keyword", "keyword", {}),
    ("vector", "vector", {}),
    ("hybrid-nocover", "hybrid", {"coverage_weight": 0.0}),
    ("hybrid-nodate", "hybrid", {"date_weight": 0.0}),
    ("hybrid", "hybrid", {}),
)
_EVIDENCE = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)")


@dataclass
class Question:
    namespace: str
    text: str
    category: int
    evidence: set[str]


@dataclass
class Conversation:
    namespace: str
    turns: list[dict[str, Any]] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


def parse_session_date(text: str) -> datetime:
    """``"1:56 pm on 8 May, 2023"`` → an aware UTC datetime."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def normalise_evidence(raw: Iterable[str], known: set[str]) -> set[str]:
    """Split malformed evidence strings (``"D8:6; D9:17"``, ``"D:11:26"``, ``"D30:05"``) and
    keep only ids that name a turn of the conversation."""
    found = set()
    for item in raw:
        for dialog, turn in _EVIDENCE.findall(str(item)):
            dia_id = f"D{int(dialog)}:{int(turn)}"
            if dia_id in known:
                found.add(dia_id)
    return found


def load_locomo(path: Path) -> list[Conversation]:
    """The conversations as memories to store and the questions to ask of each."""
    conversations = []
    for sample in json.loads(path.read_text(encoding="utf-8")):
        conv = Conversation(namespace=f"locomo/{sample['sample_id']}")
        dialog = sample["conversation"]
        sessions = sorted(int(k.split("_")[1]) for k in dialog if re.fullmatch(r"session_\d+", k))
        for number in sessions:
            when = parse_session_date(dialog[f"session_{number}_date_time"])
            for turn in dialog[f"session_{number}"]:
                content = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    content += f" [image: {turn['blip_caption']}]"
                conv.turns.append(
                    {
                        "content": content,
                        "namespace": conv.namespace,
                        "kind": "message",
                        "valid_from": when,
                        "metadata": {"dia_id": turn["dia_id"]},
                    }
                )
        known = {t["metadata"]["dia_id"] for t in conv.turns}
        for qa in sample["qa"]:
            if qa.get("category") not in CATEGORIES:
                continue
            evidence = normalise_evidence(qa.get("evidence") or [], known)
            if evidence:
                conv.questions.append(Question(conv.namespace, qa["question"], qa["category"], evidence))
        conversations.append(conv)
    return conversations


def ingest(mem: Memory, conversations: list[Conversation]) -> dict[str, set[str]]:
    """Store every turn; returns memory id → the dialog ids it holds (identical turns in one
    conversation are stored once, as the content hash de-duplicates them)."""
    dia_ids: dict[str, set[str]] = defaultdict(set)
    for conv in conversations:
        stored = mem.add_many(conv.turns, wait=True)  # vectors stored before the questions are asked
        for turn, memory in zip(conv.turns, stored, strict=True):
            dia_ids[memory.id].add(turn["metadata"]["dia_id"])
    return dia_ids


def evaluate(mem: Memory, conversations: list[Conversation], dia_ids: dict[str, set[str]], mode: str) -> dict[str, Any]:
    """Recall@k per category and overall, and query latency, for one recall mode."""
    per_cat: dict[int, list[list[float]]] = defaultdict(list)
    latencies = []
    for conv in conversations:
        for q in conv.questions:
            start = time.perf_counter()
            result = mem.recall(q.text, namespace=q.namespace, top_k=max(KS), mode=mode, touch=False)
            latencies.append((time.perf_counter() - start) * 1000)
            if result.mode != mode:
                raise SystemExit(f"asked for {mode} recall, got {result.mode}: {result.notices}")
            ranked = [dia_ids[h.memory.id] for h in result.hits]
            per_cat[q.category].append([_recall_at(ranked, q.evidence, k) for k in KS])
    return summarise(per_cat, latencies)


def _recall_at(ranked: list[set[str]], evidence: set[str], k: int) -> float:
    seen = set().union(*ranked[:k]) if ranked else set()
    return len(evidence & seen) / len(evidence)


def summarise(per_cat: dict[int, list[list[float]]], latencies: list[float]) -> dict[str, Any]:
    def block(rows: list[list[float]]) -> dict[str, float]:
        return {f"r@{k}": round(100 * statistics.fmean(r[i] for r in rows), 1) for i, k in enumerate(KS)} | {"n": len(rows)}

    everything = [row for rows in per_cat.values() for row in rows]
    latencies.sort()
    return {
        "overall": block(everything),
        "by_category": {f"{c}-{CATEGORIES[c]}": block(per_cat[c]) for c in sorted(per_cat)},
        "query_ms": {"p50": round(_percentile(latencies, 50), 2), "p95": round(_percentile(latencies, 95), 2)},
    }


def _percentile(sorted_values: list[float], pct: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def print_table(report: dict[str, Any]) -> None:
    cats = list(next(iter(report["modes"].values()))["by_category"])
    header = f"{'ranking':<13} {'k':>3} {'overall':>8} " + " ".join(f"{c:>13}" for c in cats) + f" {'p50 ms':>8} {'p95 ms':>8}"
    print(header)
    print("-" * len(header))
    for name, res in report["modes"].items():
        for k in KS:
            key = f"r@{k}"
            cells = " ".join(f"{res['by_category'][c][key]:>13.1f}" for c in cats)
            lat = f" {res['query_ms']['p50']:>8.1f} {res['query_ms']['p95']:>8.1f}" if k == KS[0] else ""
            print(f"{name:<13} {k:>3} {res['overall'][key]:>8.1f} {cells}{lat}")
    ing = report["ingest"]
    ingest = (
        f"store of {ing['memories']} turns reused (--reuse: no ingest timed)"
        if ing.get("reused")
        else f"ingest {ing['memories']} turns in {ing['seconds']:.1f} s ({ing['per_second']:.0f}/s, embedding included)"
    )
    print(f"\nmodel load {report['model_load_s']:.2f} s; {ingest}; {report['questions']} questions")


def _settings(workdir: Path, recall: dict[str, float] | None) -> Any:
    (workdir / "empty.toml").write_text("")  # the defaults, whatever the user's own config says
    overrides: dict[str, Any] = {"data_dir": str(workdir), "embeddings": {"provider": "minilm"}}
    if recall:
        overrides["recall"] = dict(recall)
    return load_settings(workdir / "empty.toml", overrides=overrides, env={})


def parse_sets(items: list[str]) -> dict[str, float]:
    """``["coverage_weight=1.5", "context_span=3"]`` → ``{"coverage_weight": 1.5, "context_span": 3.0}``
    (the settings model turns whole numbers back into ints)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set wants KEY=VALUE (a [recall] setting), got {item!r}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--set {key.strip()}: {value!r} is not a number") from None
    return out


def run(
    data: Path, workdir: Path, only: set[str] | None = None, reuse: bool = False, extra: dict[str, float] | None = None
) -> dict[str, Any]:
    conversations = load_locomo(data)
    url = f"sqlite:///{workdir / 'locomo.db'}"
    saved = workdir / "dia_ids.json"
    with Memory(url, _settings(workdir, None)) as mem:
        embedder = mem.service.embedder
        assert embedder is not None
        start = time.perf_counter()
        embedder.embed(["load the model"])
        model_load = time.perf_counter() - start
        start = time.perf_counter()
        reused = reuse and saved.exists()
        if reused:  # --workdir --reuse: the store ingested by an earlier run
            dia_ids = {k: set(v) for k, v in json.loads(saved.read_text()).items()}
        else:
            dia_ids = ingest(mem, conversations)
            saved.write_text(json.dumps({k: sorted(v) for k, v in dia_ids.items()}))
        ingest_s = time.perf_counter() - start
        turns = sum(len(c.turns) for c in conversations)
        weights = mem.service.engine.weights
    modes = {}
    for name, mode, recall in RUNS:  # the same file, opened with each ranking
        if only and name not in only:
            continue
        with Memory(url, _settings(workdir, recall | (extra or {}))) as mem:
            mem.recall("warm up", mode=mode, touch=False)
            modes[name] = evaluate(mem, conversations, dia_ids, mode)
    return {
        "benchmark": "recall_quality",
        "data": str(data),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": _cpus()},
        "overrides": extra or {},
        "ranking": {k: sorted(v) if isinstance(v, frozenset) else v for k, v in vars(weights).items() if k != "tier"},
        "questions": sum(len(c.questions) for c in conversations),
        "model_load_s": round(model_load, 2),
        "ingest": {
            "memories": turns,
            "stored": len(dia_ids),
            "seconds": round(ingest_s, 1),
            "per_second": round(turns / ingest_s, 1),
            "reused": reused,
        },
        "modes": modes,
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LoCoMo-format JSON file")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/recall_quality.json", help="where to write JSON")
    parser.add_argument("--only", help="comma-separated rows to run (default: all): " + ",".join(r[0] for r in RUNS))
    parser.add_argument("--workdir", type=Path, help="keep the ingested store here (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="with --workdir: query the store an earlier run ingested there")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a [recall] setting for every row (repeatable)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    extra = parse_sets(args.set)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        if not args.reuse:
            for stale in ("locomo.db", "locomo.db-wal", "locomo.db-shm", "dia_ids.json"):
                (args.workdir / stale).unlink(missing_ok=True)
        report = run(args.data, args.workdir, only, args.reuse, extra)
    else:
        with tempfile.TemporaryDirectory(prefix="memmesh-locomo-") as tmp:
            report = run(args.data, Path(tmp), only, extra=extra)
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
