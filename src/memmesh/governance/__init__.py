"""Namespace standards and governance: who may change shared memory, and how.

A *standard* is per-namespace policy (governance per action, default tier, TTL, retention,
required tags), inherited down the namespace tree. The :class:`Governance` core evaluates
it once, inside the service's write paths, so every face (Python, CLI, HTTP, MCP) gets the
same allow / deny / approve outcome; ``approve`` turns the action into a pending action an
approver decides.
"""

from memmesh.governance.core import Governance
from memmesh.governance.model import ACTIONS, DECISIONS, MODES, EffectiveStandard, Inherited, PendingAction, Standard

__all__ = ["ACTIONS", "DECISIONS", "MODES", "EffectiveStandard", "Governance", "Inherited", "PendingAction", "Standard"]
