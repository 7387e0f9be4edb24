"""Quorum writes: how many acknowledgements a write needs, and the answer when it falls short.

Pure rules, so the count is decided in one place: the local commit is one acknowledgement,
each peer that applied the write is another. The transport (:mod:`.outbox`) only reports
who answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memmesh.errors import ConfigError, QuorumNotMetError
from memmesh.wording import count


def check_quorum_setting(writes: int, peers: int) -> None:
    """Refuse a quorum no mesh of this size can ever meet (it would turn every write into a 503)."""
    if writes < 0:
        raise ConfigError(f"federation.quorum_writes must be 0 (local only) or more (got {writes})")
    if writes > peers + 1:
        raise ConfigError(
            f"federation.quorum_writes is {writes} but this node and its {count(peers, 'peer')} are only {peers + 1} nodes: "
            "lower --quorum-writes or add --peers"
        )


@dataclass
class QuorumTally:
    """Acknowledgements of one write so far (the local commit counts as the first)."""

    needed: int
    acks: int = 1
    failures: dict[str, str] = field(default_factory=dict)
    """Peer → why it did not acknowledge."""

    @property
    def met(self) -> bool:
        return self.acks >= self.needed

    def verdict(self, timeout_ms: int, peers: int) -> None:
        """Raise ``quorum_not_met`` (503 with Retry-After) unless enough nodes hold the write.

        The write is not rolled back: the local copy stays and keeps replicating, so a client
        retrying with the same client id gets the same memory, not a duplicate.
        """
        if self.met:
            return
        silent = peers - len(self.failures) - (self.acks - 1)
        reasons = [f"{peer}: {why}" for peer, why in sorted(self.failures.items())]
        if silent > 0:
            reasons.append(f"{count(silent, 'peer')} did not answer within {timeout_ms} ms")
        reason = "; ".join(reasons) or "no peer acknowledged"
        raise QuorumNotMetError(
            f"only {self.acks} of the {self.needed} nodes this write needs hold it ({reason}); it is stored here and "
            "will still replicate: retry with the same client id",
            details={"got": self.acks, "needed": self.needed, "reason": reason, "retry_after": 1},
        )
