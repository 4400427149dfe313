"""Final-performance table (protocol.md §6.6) and the per-method rank summary (§6.5)."""

from __future__ import annotations

import numpy as np
import pandas as pd

MEAN_ROW = "mean"


def final_table(table: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Mean over seeds ± standard error over seeds at each task's last evaluation point, plus a
    ``mean`` row (means over tasks of the means and of the SEMs).

    Columns: task, method, point, mean, sem, n_seeds, bold, underline. ``bold``: the strictly highest
    mean of its row; ``underline``: that mean − SEM exceeds every other method's mean + SEM (a
    single seed has no SEM, so nothing is underlined then)."""
    last = table.groupby("task")["point"].transform("max")
    final = table[table["point"] == last]
    full = pd.MultiIndex.from_product([sorted(final["task"].unique()), methods], names=["task", "method"])
    final = final.set_index(["task", "method"]).reindex(full)
    final["point"] = final.groupby(level="task")["point"].transform("max")
    final = final[["point", "mean", "sem", "n_seeds"]].reset_index()
    means = final.groupby("method", sort=False)[["mean", "sem"]].mean().reindex(methods).reset_index()
    means.insert(0, "task", MEAN_ROW)
    out = pd.concat([final, means], ignore_index=True)
    out["n_seeds"] = out["n_seeds"].astype("Int64")
    out["point"] = out["point"].astype("Int64")
    flags = out.groupby("task", sort=False)[["mean", "sem"]].apply(_row_flags).reset_index(level=0, drop=True)
    return out.join(flags)


def _row_flags(row: pd.DataFrame) -> pd.DataFrame:
    flags = pd.DataFrame(False, index=row.index, columns=["bold", "underline"])
    means = row["mean"].dropna()
    if means.empty or (means == means.max()).sum() > 1:
        return flags
    best = means.idxmax()
    flags.loc[best, "bold"] = True
    others = row.drop(index=best)
    upper = (others["mean"] + others["sem"]).max() if len(others) else -np.inf
    flags.loc[best, "underline"] = bool(row.loc[best, "mean"] - row.loc[best, "sem"] > upper)
    return flags


def final_table_wide(final: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Tasks × methods of ``"mean ± sem"`` strings (``*`` marks the bold cell), for printing."""

    def cell(r) -> str:
        if pd.isna(r["mean"]):
            return "—"
        text = f"{r['mean']:.{digits}f}" + (f" ± {r['sem']:.{digits}f}" if pd.notna(r["sem"]) else "")
        return text + (" *" if r["bold"] else "")

    cells = final.assign(cell=final.apply(cell, axis=1))
    return cells.pivot(index="task", columns="method", values="cell").reindex(
        index=list(dict.fromkeys(final["task"])), columns=list(dict.fromkeys(final["method"]))
    )


def final_table_latex(final: pd.DataFrame, digits: int = 2) -> str:
    """The table as a LaTeX tabular: ``\\textbf`` for bold, ``\\underline`` for underlined cells."""
    methods = list(dict.fromkeys(final["method"]))
    lines = [
        r"\begin{tabular}{l" + "r" * len(methods) + "}",
        " & ".join(["task", *(_tex(m) for m in methods)]) + r" \\",
        r"\hline",
    ]
    for task, row in final.groupby("task", sort=False):
        cells = []
        for r in row.set_index("method").reindex(methods).itertuples():
            if pd.isna(r.mean):
                cells.append("--")
                continue
            text = f"{r.mean:.{digits}f}" + (rf" $\pm$ {r.sem:.{digits}f}" if pd.notna(r.sem) else "")
            text = rf"\underline{{{text}}}" if r.underline else text
            cells.append(rf"\textbf{{{text}}}" if r.bold else text)
        if task == MEAN_ROW:
            lines.append(r"\hline")
        lines.append(" & ".join([_tex(task), *cells]) + r" \\")
    return "\n".join([*lines, r"\end{tabular}", ""])


def _tex(text: str) -> str:
    return text.replace("_", r"\_")


def rank_summary(
    ranks: pd.DataFrame, normalised: pd.DataFrame, task_weights: pd.Series | None = None
) -> pd.DataFrame:
    """Per method: mean rank and mean normalised score at the last point and over all points
    ("overall"/anytime), ordered by overall rank, then final rank (the original's legend order).

    ``task_weights`` (task → weight, default 1 each) weigh each task's rows in every mean."""
    last = ranks.index.get_level_values("point").max()

    def mean(rows: pd.DataFrame) -> pd.Series:
        if task_weights is None:
            return rows.mean()
        w = task_weights.reindex(rows.index.get_level_values("task")).fillna(1.0).to_numpy()
        return rows.mul(w, axis=0).sum() / w.sum()

    summary = pd.DataFrame(
        {
            "final_rank": mean(ranks.xs(last, level="point", drop_level=False)),
            "overall_rank": mean(ranks),
            "final_normalised": mean(normalised.xs(last, level="point", drop_level=False)),
            "overall_normalised": mean(normalised),
        }
    )
    summary.index.name = "method"
    return summary.sort_values(["overall_rank", "final_rank"], kind="stable")
