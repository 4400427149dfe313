"""Small plots for the Dagster UI, embedded in Markdown metadata as PNG data URIs."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _png_markdown(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def curve_markdown(points: pd.DataFrame, title: str) -> str:
    """Best member's and mean evaluation return against timesteps."""
    fresh = points[points["eval_is_fresh"].astype(bool)]
    by_step = fresh.groupby("timesteps")["eval_return"]
    fig, ax = plt.subplots(figsize=(4, 2.4))
    ax.plot(by_step.max().index, by_step.max().to_numpy(), marker="o", label="best member")
    ax.plot(by_step.mean().index, by_step.mean().to_numpy(), ls="--", label="population mean")
    ax.set_xlabel("timesteps per member")
    ax.set_ylabel("evaluation return")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    return _png_markdown(fig, "learning curve")


def ranks_markdown(anytime_ranks: pd.DataFrame) -> str:
    """Mean rank of each method at each evaluation point (lower is better)."""
    fig, ax = plt.subplots(figsize=(4.5, 2.6))
    for method in anytime_ranks.columns:
        ax.plot(anytime_ranks.index, anytime_ranks[method].to_numpy(), marker=".", label=method)
    ax.set_xlabel("evaluation point")
    ax.set_ylabel("mean rank")
    ax.invert_yaxis()
    ax.legend(fontsize=6, ncol=2)
    return _png_markdown(fig, "anytime mean rank")
