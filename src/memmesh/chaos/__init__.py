"""Chaos harness and ship-gate: real ``memmesh serve`` nodes on 127.0.0.1, faults injected
between and inside them, and a checker that every acknowledged write survives.

Used by ``memmesh chaos`` and ``memmesh ship-gate`` (``interfaces/cli/chaos.py``) and by the
federation tests, which start their meshes with :mod:`memmesh.chaos.nodes`.
"""
