"""The message bus: conversations between agents, per-agent read cursors, long-poll, and task
queues with leases, fencing tokens and a dead-letter list (issues 17 and 24).

:class:`memmesh.bus.core.Bus` holds every rule; the faces reach it as ``service.bus``.
"""

from memmesh.bus.core import Bus

__all__ = ["Bus"]
