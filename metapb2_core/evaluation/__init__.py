"""Evaluation of run records (protocol.md §6): scores, normalised anytime curves, ranks,
Friedman/Nemenyi statistics, final tables and plots. Dagster-free; inputs are points DataFrames."""

from metapb2_core.evaluation.evaluate import Evaluation, evaluate
from metapb2_core.evaluation.grid import GridReport, IncompleteGridWarning, check_grid
from metapb2_core.evaluation.load import Runs, load_points, load_runs
from metapb2_core.evaluation.scores import normalise, ranks, run_scores, seed_table, stacked
from metapb2_core.evaluation.stats import Comparison, compare, critical_difference, friedman

__all__ = [
    "Comparison",
    "Evaluation",
    "GridReport",
    "IncompleteGridWarning",
    "Runs",
    "check_grid",
    "compare",
    "critical_difference",
    "evaluate",
    "friedman",
    "load_points",
    "load_runs",
    "normalise",
    "ranks",
    "run_scores",
    "seed_table",
    "stacked",
]
