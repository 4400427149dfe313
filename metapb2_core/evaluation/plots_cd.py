"""Critical-difference diagram (Demšar 2006, Fig. 1): mean ranks on an axis, the Nemenyi CD
as a bar, and black bars joining methods whose ranks do not differ significantly."""

from __future__ import annotations

import math
from pathlib import Path

from metapb2_core.evaluation.stats import Comparison
from metapb2_core.evaluation.style import method_colors, new_figure, save

ROW = 0.32  # vertical distance between method labels, in axis data units


def plot_cd_diagram(cmp: Comparison, path: str | Path, what: str = "") -> Path:
    ranks = cmp.mean_ranks.sort_values(kind="stable")
    k = len(ranks)
    colors = method_colors(list(ranks.index))
    half = math.ceil(k / 2)
    n_groups = len(cmp.groups)
    label_top = -0.25 - 0.14 * n_groups
    bottom = label_top - ROW * (half - 1) - 0.3

    fig = new_figure(9, 1.6 + 0.45 * half + 0.12 * n_groups)
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_xlim(0.25, k + 0.75)
    ax.set_ylim(bottom, 1.05)

    # rank axis, 1 (best) on the left
    ax.plot([1, k], [0, 0], color="black", lw=1.2, clip_on=False)
    for t in range(1, k + 1):
        ax.plot([t, t], [0, 0.1], color="black", lw=1.2)
        ax.text(t, 0.16, str(t), ha="center", va="bottom", fontsize=10)
    for t in range(1, k):
        ax.plot([t + 0.5, t + 0.5], [0, 0.05], color="black", lw=0.8)

    # critical difference bar
    ax.plot([1, 1 + cmp.cd], [0.62, 0.62], color="black", lw=2, clip_on=False)
    for x in (1, 1 + cmp.cd):
        ax.plot([x, x], [0.56, 0.68], color="black", lw=1.2, clip_on=False)
    ax.text(1 + cmp.cd / 2, 0.72, f"CD = {cmp.cd:.2f}", ha="center", va="bottom", fontsize=10)

    # methods: best half to the left, the rest to the right
    for i, (m, r) in enumerate(ranks.items()):
        left = i < half
        row = i if left else k - 1 - i
        y = label_top - ROW * row
        x_end = 0.6 if left else k + 0.4
        ax.plot([r, r, x_end], [0, y, y], color=colors[m], lw=1.5, clip_on=False)
        ax.text(
            x_end + (-0.05 if left else 0.05),
            y,
            f"{m} ({r:.2f})",
            ha="right" if left else "left",
            va="center",
            fontsize=10,
            color="black",
        )

    # groups of methods that are not significantly different
    for g, members in enumerate(cmp.groups):
        lo, hi = ranks[members].min(), ranks[members].max()
        y = -0.15 - 0.14 * g
        ax.plot([lo - 0.03, hi + 0.03], [y, y], color="black", lw=4, solid_capstyle="round")

    f = cmp.friedman
    ax.set_title(
        f"Critical difference (Nemenyi, α = {cmp.alpha:g}){' — ' + what if what else ''}\n"
        f"{f.n_blocks} blocks; Friedman χ² = {f.statistic:.2f}, p = {f.p_value:.3g}; "
        "bars join methods that do not differ significantly",
        fontsize=10,
    )
    return save(fig, path)
