"""What the Dagster UI shows of a result: numbers rounded with units, and plots embedded in
Markdown metadata as PNG data URIs, legible at the size the UI draws them."""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")
import dagster as dg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from metapb2_core.evaluation.tables import MEAN_ROW  # noqa: E402

DPI = 120
MINUS = "\N{MINUS SIGN}"


def number(x: float, digits: int = 1, unit: str = "") -> str:
    """``-1057.561`` → ``−1,057.6``; not-a-number as ``—``."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:,.{digits}f}".replace("-", MINUS) + unit


def seconds(s: float) -> str:
    """``0.38 s``, ``42.1 s``, ``7.0 min``, ``7.02 h``."""
    if s < 10:
        return f"{s:.2f} s"
    if s < 600:
        return f"{s:.1f} s"
    if s < 3 * 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _png_markdown(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def curve_markdown(points: pd.DataFrame, title: str) -> str:
    """Best member's and mean evaluation return against timesteps."""
    fresh = points[points["eval_is_fresh"].astype(bool)]
    by_step = fresh.groupby("timesteps")["eval_return"]
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    ax.plot(by_step.max().index, by_step.max().to_numpy(), marker="o", label="best member")
    ax.plot(by_step.mean().index, by_step.mean().to_numpy(), ls="--", label="population mean")
    ax.set_xlabel("timesteps per member")
    ax.set_ylabel("evaluation return")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png_markdown(fig, "learning curve")


MARKERS = "osD^v<>Xp*h"


def tie_groups(curves: pd.DataFrame) -> dict[str, list[str]]:
    """Each method → the other methods whose curve equals its own at every point."""
    cols = list(curves.columns)
    return {m: [o for o in cols if o != m and curves[o].round(9).equals(curves[m].round(9))] for m in cols}


def ranks_markdown(anytime_ranks: pd.DataFrame) -> str:
    """Mean rank of each method at each evaluation point (lower is better); methods whose curves
    coincide are drawn with distinct markers and named as tied in the legend."""
    ties = tie_groups(anytime_ranks)
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    for i, method in enumerate(anytime_ranks.columns):
        label = method + (f"  (tied with {', '.join(ties[method])})" if ties[method] else "")
        ax.plot(
            anytime_ranks.index,
            anytime_ranks[method].to_numpy(),
            marker=MARKERS[i % len(MARKERS)],
            markersize=7 - 1.5 * (len(ties[method]) > 0) * (i % 3),
            ls=["-", "--", ":", "-."][i % 4],
            label=label,
        )
    ax.set_xlabel("evaluation point")
    ax.set_ylabel("mean rank (1 = best)")
    ax.invert_yaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png_markdown(fig, "anytime mean rank")


WINNER = "\N{BLACK STAR} "
BLOCKS = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"


def _table(rows: list[dict], columns: list[str]) -> dg.TableMetadataValue:
    """An inline table (the UI draws Markdown inline only under 1,000 characters; tables always)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns])
    return dg.MetadataValue.table([dg.TableRecord({c: r[c] for c in columns}) for r in rows], schema)


def frame_table(df: pd.DataFrame, index: str | None = None) -> dg.TableMetadataValue:
    """Any table of the core (cells as text) as inline table metadata, its index as the first column."""
    name = index or df.index.name or "row"
    rows = [{name: str(i), **{c: _cell(v) for c, v in r.items()}} for i, r in df.iterrows()]
    return _table(rows, [name, *map(str, df.columns)])


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "—" if pd.isna(v) else number(v, 2)
    return str(v)


def final_return_table(final: pd.DataFrame, normalised: pd.Series | None = None) -> dg.TableMetadataValue:
    """Tasks × methods of final return (mean ± SE over seeds, from ``tables.final_table``), the
    best of each row starred; raw returns are not averaged across tasks (their scales differ), so
    the last row is each method's mean normalised final score (``normalised``) instead."""
    methods = list(dict.fromkeys(final["method"]))
    rows = []
    for task, group in final[final["task"] != MEAN_ROW].groupby("task", sort=False):
        row = {"task": task}
        for r in group.set_index("method").reindex(methods).reset_index().itertuples():
            if pd.isna(r.mean):
                row[r.method] = "—"
                continue
            text = number(r.mean) + (f" ± {number(r.sem)}" if pd.notna(r.sem) else "")
            row[r.method] = (WINNER + text) if r.bold else text
        rows.append(row)
    if normalised is not None:
        rows.append({"task": "mean normalised score", **{m: number(normalised.get(m), 2) for m in methods}})
    return _table(rows, ["task", *methods])


def sparkline(values, worst: float, best: float = 1.0) -> str:
    """One block per point, full for ``best`` (rank 1) down to the lowest for ``worst``."""
    span = (worst - best) or 1.0
    return "".join(BLOCKS[round((worst - v) / span * (len(BLOCKS) - 1))] for v in values)


def rank_summary_table(summary: pd.DataFrame, anytime_ranks: pd.DataFrame) -> dg.TableMetadataValue:
    """Per method (best first): final and overall mean rank and normalised score, and the anytime
    mean rank over the evaluation points as a sparkline (a full block is rank 1)."""
    k = len(anytime_ranks.columns)
    ties = tie_groups(anytime_ranks)
    rows = []
    for method, r in summary.iterrows():
        rows.append(
            {
                "method": method + (f" (= {', '.join(ties[method])})" if ties.get(method) else ""),
                "final rank": number(r["final_rank"], 2),
                "overall rank": number(r["overall_rank"], 2),
                "final normalised": number(r["final_normalised"], 2),
                "overall normalised": number(r["overall_normalised"], 2),
                "anytime rank (█ = 1st)": sparkline(anytime_ranks[method].to_numpy(), worst=k),
            }
        )
    return _table(rows, list(rows[0]))
