"""The tamper-evident audit log: hash-chained entries in the store, signed checkpoints outside it.

See docs/audit.md. :class:`AuditLog` (``service.audit``) appends, checkpoints, verifies,
exports and prunes; :func:`memmesh.audit.verify.verify_log` is the verifier itself.
"""

from memmesh.audit.capture import current_caller
from memmesh.audit.log import AuditConfig, AuditEntry, AuditLog, AuditPage, PruneReport
from memmesh.audit.verify import Problem, VerifyReport

__all__ = ["AuditConfig", "AuditEntry", "AuditLog", "AuditPage", "Problem", "PruneReport", "VerifyReport", "current_caller"]
