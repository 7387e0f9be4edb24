"""Looking over memory as a whole: the namespace tree, duplicate checks, session briefings
and quota use.

Reached as ``service.survey``. Everything here is a read composed from the service's own
reads (so role and namespace scope apply exactly as elsewhere); nothing is written,
except that a session briefing's recall counts as an access like any recall.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from memmesh.errors import InvalidInputError
from memmesh.kernel import CoreCalls, Kernel, authorize, check_query_size, content_hash
from memmesh.limits import quota_namespace, seconds_until_next_day, utc_day
from memmesh.model import DEFAULT_NAMESPACE, Hit, Memory, Principal, normalize_namespace
from memmesh.recall.keyword import query_terms


class TaxonomyNode(BaseModel):
    """One namespace segment: memories directly in it (``count``) and in its whole subtree (``total``)."""

    name: str
    path: str
    count: int
    total: int
    children: list[TaxonomyNode] = Field(default_factory=list)


class NearDuplicate(BaseModel):
    memory: Memory
    similarity: float
    method: Literal["cosine", "token_jaccard"]


class DuplicateReport(BaseModel):
    """Whether content is already stored: the exact match (same namespace + content) and close ones."""

    namespace: str
    is_duplicate: bool
    exact: Memory | None = None
    near: list[NearDuplicate] = Field(default_factory=list)
    threshold: float


class Briefing(BaseModel):
    """What a session starts with: the newest memories and the ones relevant to the task."""

    namespace: str | None
    task: str | None
    recent: list[Memory]
    relevant: list[Hit]
    mode: str | None = None
    notices: list[str] = Field(default_factory=list)
    total_memories: int


class QuotaUse(BaseModel):
    namespace: str
    written_today: int
    remaining: int | None


class QuotaStatus(BaseModel):
    """Daily write quota per namespace (UTC days) and the size limits writes must fit."""

    day: str
    daily_write_quota: int | None
    resets_in_seconds: int
    namespaces: list[QuotaUse]
    max_content_bytes: int
    max_page_size: int


class Survey:
    """Whole-memory reads over one service (``service.survey``)."""

    def __init__(self, kernel: Kernel, core: CoreCalls) -> None:
        self.kernel = kernel
        self.core = core

    def taxonomy(self, *, namespace: str | None = None, principal: Principal) -> list[TaxonomyNode]:
        """The namespace tree with counts (only namespaces the caller may read), biggest first."""
        root = normalize_namespace(namespace) if namespace else None
        counts = {
            c.namespace: c.count
            for c in self.core.stats(principal=principal).by_namespace
            if root is None or c.namespace == root or c.namespace.startswith(root + "/")
        }
        return build_tree(counts)

    def check_duplicate(
        self,
        content: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        threshold: float = 0.85,
        top_k: int = 5,
        principal: Principal,
    ) -> DuplicateReport:
        """Is this content already remembered? Exact: same namespace and content (what
        store would de-duplicate). Near: recall hits whose similarity reaches ``threshold``
        (embedding cosine when an embedder works, else word-set Jaccard)."""
        if not 0.0 < threshold <= 1.0:
            raise InvalidInputError(f"threshold must be in (0, 1] (got {threshold})")
        k = self.kernel
        k.check_content(content)
        ns = normalize_namespace(namespace)
        who = authorize(principal, "reader", ns)
        exact = k.store.find_by_hash(ns, content_hash(ns, content))
        if exact is not None and (exact.expires_at is not None and exact.expires_at <= k.clock()):
            exact = None
        result = self.core.recall(content, namespace=ns, top_k=top_k, explain=True, touch=False, principal=who)
        words = set(query_terms(content))
        near = []
        for hit in result.hits:
            if exact is not None and hit.memory.id == exact.id:
                continue
            cosine = (hit.explain or {}).get("vector", 0.0) if result.mode != "keyword" else 0.0
            if cosine > 0.0:
                candidate = NearDuplicate(memory=hit.memory, similarity=round(cosine, 4), method="cosine")
            else:
                candidate = NearDuplicate(
                    memory=hit.memory, similarity=round(jaccard(words, _words(hit.memory)), 4), method="token_jaccard"
                )
            if candidate.similarity >= threshold:
                near.append(candidate)
        near.sort(key=lambda n: -n.similarity)
        return DuplicateReport(namespace=ns, is_duplicate=exact is not None or bool(near), exact=exact, near=near, threshold=threshold)

    def session_start(
        self,
        *,
        task: str | None = None,
        namespace: str | None = None,
        recent: int = 10,
        relevant: int = 10,
        budget_tokens: int | None = None,
        principal: Principal,
    ) -> Briefing:
        """Context for a new session: the ``recent`` newest memories in the namespace and,
        when a task is described, the ``relevant`` best recall hits for it."""
        svc = self.core
        newest = svc.list(limit=recent, namespace=namespace, principal=principal).items
        hits: list[Hit] = []
        mode = None
        notices: list[str] = []
        if task and task.strip():
            check_query_size(task, self.kernel.policy.max_content_bytes, "task")  # recall would call it "query"
            result = svc.recall(task, top_k=relevant, namespace=namespace, budget_tokens=budget_tokens, principal=principal)
            hits, mode, notices = result.hits, result.mode, result.notices
        total = sum(
            c.count
            for c in svc.stats(principal=principal).by_namespace
            if not namespace or c.namespace == namespace or c.namespace.startswith(namespace.rstrip("/") + "/")
        )
        return Briefing(namespace=namespace, task=task, recent=newest, relevant=hits, mode=mode, notices=notices, total_memories=total)

    def quota_status(self, *, namespace: str | None = None, principal: Principal) -> QuotaStatus:
        """Writes counted today against ``limits.daily_write_quota`` per namespace (0 = off)."""
        svc = self.kernel
        asked = normalize_namespace(namespace) if namespace else None
        who = authorize(principal, "reader", asked)
        root = quota_namespace(asked) if asked else None  # quotas are per top-level namespace
        now = svc.clock()
        day = utc_day(now)
        quota = svc.policy.daily_write_quota
        used = {
            ns: n
            for ns, n in svc.store.write_counts(day).items()
            if _sees_quota(who, ns) and (root is None or ns == root or ns.startswith(root + "/"))
        }
        if root is not None:
            used.setdefault(root, 0)
        rows = [
            QuotaUse(namespace=ns, written_today=n, remaining=max(0, quota - n) if quota > 0 else None)
            for ns, n in sorted(used.items(), key=lambda item: (-item[1], item[0]))
        ]
        return QuotaStatus(
            day=day,
            daily_write_quota=quota or None,
            resets_in_seconds=int(seconds_until_next_day(now)),
            namespaces=rows,
            max_content_bytes=svc.policy.max_content_bytes,
            max_page_size=svc.policy.max_page_size,
        )


def build_tree(counts: dict[str, int]) -> list[TaxonomyNode]:
    """Nest ``{namespace: count}`` into a tree of segments; pure, so tests feed it values."""
    nodes: dict[str, dict[str, Any]] = {}
    roots: list[str] = []
    for namespace in sorted(counts):
        parts = namespace.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if path not in nodes:
                nodes[path] = {"name": parts[depth - 1], "path": path, "count": 0, "children": []}
                if depth == 1:
                    roots.append(path)
                else:
                    nodes["/".join(parts[: depth - 1])]["children"].append(path)
        nodes[namespace]["count"] = counts[namespace]

    def make(path: str) -> TaxonomyNode:
        node = nodes[path]
        children = sorted((make(child) for child in node["children"]), key=lambda n: (-n.total, n.name))
        return TaxonomyNode(
            name=node["name"], path=path, count=node["count"], total=node["count"] + sum(c.total for c in children), children=children
        )

    return sorted((make(r) for r in roots), key=lambda n: (-n.total, n.name))


def jaccard(a: set[str], b: set[str]) -> float:
    """Share of words two texts have in common (|a ∩ b| / |a ∪ b|); 0 when both are empty."""
    return len(a & b) / len(a | b) if a or b else 0.0


def _words(memory: Memory) -> set[str]:
    return set(query_terms(memory.content))


def _sees_quota(who: Principal, top: str) -> bool:
    """A caller sees the quota of a top-level namespace it may write anywhere under."""
    roots = who.prefixes()
    return roots is None or any(r == top or r.startswith(top + "/") for r in roots)


__all__ = ["Briefing", "DuplicateReport", "QuotaStatus", "Survey", "TaxonomyNode", "build_tree", "jaccard"]
