"""Shared plot style: one colour per method, the same in every plot and every report.

Figures are built with ``matplotlib.figure.Figure`` (Agg canvas), never pyplot, so that a report
neither needs a display nor changes the caller's matplotlib backend.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

from metapb2_core.methods import METHODS

DPI = 150


def method_colors(methods: list[str]) -> dict[str, tuple]:
    """Colour of each method, keyed by its position in the sorted method registry (names not in
    the registry follow it, sorted), so a method keeps its colour whichever others are shown."""
    known = sorted(METHODS)
    order = known + sorted(set(methods) - set(known))
    palette = colormaps["tab10"].colors if len(order) <= 10 else colormaps["tab20"].colors
    return {m: palette[order.index(m) % len(palette)] for m in methods}


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def point_label(table) -> str:
    """x-axis label for evaluation points, with the step count of one point when it is uniform."""
    first = table.loc[table["point"] == 1, "timesteps"].unique()
    if len(first) == 1:
        return f"Evaluation point (1 point = {int(first[0]):,} env steps per member)"
    return "Evaluation point"
