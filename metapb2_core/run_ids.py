"""The one pattern of a run id: ``{kind}-{task}-{budget}-s{seed}``, then the suffixes that tell
requests of one cell apart (``faithful``, a tag, a digest of what differs from the defaults).
Every run id of the platform is made here: population runs (kind: the method), ask/tell records,
candidate searches and performance-matrix columns."""

from __future__ import annotations


def run_id(kind: str, task: str, budget: str, seed: int, *suffixes: str) -> str:
    """``kind-task-budget-sSEED[-suffix…]``; empty suffixes are left out."""
    return "-".join([f"{kind}-{task}-{budget}-s{seed}", *(s for s in suffixes if s)])
