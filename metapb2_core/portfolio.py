"""Portfolio warm start (methods.md §9, protocol.md §5.1–5.4) in three steps.

1. Candidates: per task and seed, a random search of 30 configurations for 4 intervals, trained
   with fixed hyperparameters in populations of the budget's size; the best configuration by final
   evaluation return is that task's candidate.
2. Performance matrix: every candidate re-trained with fixed hyperparameters on every task.
3. Portfolio per target task: column-normalised matrix without the target's environment, then a
   greedy selection maximising Σ_task max_{c ∈ portfolio} score (best-of-portfolio coverage).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from metapb2_core.budgets import Budget
from metapb2_core.envs import get_task
from metapb2_core.errors import MetaPB2Error
from metapb2_core.methods.fixed import FixedConfigs
from metapb2_core.population import run_population
from metapb2_core.quirks import Quirks
from metapb2_core.rounds import exploits_per_round
from metapb2_core.space import Config, SearchSpace
from metapb2_core.store.files import check_writable_dir, ensure_writable_dir

CANDIDATE_CONFIGS = 30
CANDIDATE_INTERVALS = 4


@dataclass(frozen=True)
class Candidate:
    id: str
    source_task: str
    seed: int
    config: Config
    score: float


def candidate_budget(budget: Budget, intervals: int = CANDIDATE_INTERVALS) -> Budget:
    return replace(budget, name=f"{budget.name}-portfolio", total_steps=intervals * budget.interval)


def _final_scores(
    task_key: str, configs: list[Config], budget: Budget, seed: int, space: SearchSpace, quirks: Quirks
) -> np.ndarray:
    """Final evaluation return of each configuration trained with fixed hyperparameters, in
    populations of the budget's size: the members never interact, and one population shape per
    task means one compiled program for candidates, matrix and evaluation runs alike (compilation,
    not training, dominates small budgets)."""
    task = get_task(task_key)
    size = budget.population_size
    scores = []
    for chunk, start in enumerate(range(0, len(configs), size)):
        part = configs[start : start + size]
        padded = part + [part[-1]] * (size - len(part))  # the last population is filled, then cut
        method = FixedConfigs(space, np.random.default_rng(seed), quirks, configs=padded)
        result = run_population(task, method, budget, seed + 100_003 * chunk, space, task.env_params(quirks))
        last = result.points[result.points["eval_is_fresh"]]
        last = last[last["timesteps"] == last["timesteps"].max()].sort_values("member")
        scores.append(last["eval_return"].to_numpy(dtype=np.float64)[: len(part)])
    return np.concatenate(scores)


def task_stream(task_key: str) -> int:
    """A fixed number per task (CRC-32 of its key), so each task draws its own configurations."""
    return zlib.crc32(task_key.encode())


def candidate_draws(task_key: str, seed: int, space: SearchSpace, n_configs: int) -> list[Config]:
    """The configurations a candidate search of ``task_key`` and ``seed`` tries: its own prior draws."""
    rng = np.random.default_rng([seed, 3, task_stream(task_key)])
    return [space.sample(rng) for _ in range(n_configs)]


def search_candidates(
    task_key: str,
    seed: int,
    budget: Budget,
    space: SearchSpace,
    quirks: Quirks = Quirks(),
    n_configs: int = CANDIDATE_CONFIGS,
    intervals: int = CANDIDATE_INTERVALS,
    n_best: int = 1,
) -> list[Candidate]:
    """Step 1 for one task and seed: the best ``n_best`` of ``n_configs`` prior draws after
    ``intervals``. The draws are the task's own (seeded by task and seed), as in the original."""
    check_search(seed, n_configs, intervals, n_best)
    configs = candidate_draws(task_key, seed, space, n_configs)
    scores = _final_scores(task_key, configs, candidate_budget(budget, intervals), seed, space, quirks)
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:n_best]
    return [
        Candidate(f"{task_key}-s{seed}-{rank}", task_key, seed, configs[i], float(scores[i]))
        for rank, i in enumerate(order)
    ]


def performance_matrix(
    candidates: list[Candidate],
    tasks: list[str],
    budget: Budget,
    space: SearchSpace,
    seeds: tuple[int, ...] = (0,),
    quirks: Quirks = Quirks(),
    intervals: int = CANDIDATE_INTERVALS,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Step 2: candidates × tasks, the mean over ``seeds`` of the final evaluation return."""
    configs = [c.config for c in candidates]
    b = candidate_budget(budget, intervals)
    columns = {}
    for task in tasks:
        columns[task] = np.mean([_final_scores(task, configs, b, s, space, quirks) for s in seeds], axis=0)
        if progress:
            progress(task)
    return pd.DataFrame(columns, index=pd.Index([c.id for c in candidates], name="candidate"))


def normalise_columns(matrix: pd.DataFrame) -> pd.DataFrame:
    lo, hi = matrix.min(axis=0), matrix.max(axis=0)
    return (matrix - lo) / (hi - lo + 1e-8)


def greedy_select(scores: np.ndarray, k: int, row_sums: bool = False) -> list[int]:
    """K row indices of a (candidates × tasks) matrix: greedy best-of-portfolio coverage, ties to the
    first row; with ``row_sums`` the original's top-K by row sum (Q34)."""
    n = len(scores)
    if k > n:
        raise MetaPB2Error(f"portfolio of {k} requested but only {n} candidates are available")
    if row_sums:
        return [int(i) for i in np.argsort(-scores.sum(axis=1), kind="stable")[:k]]
    chosen: list[int] = []
    cover = np.zeros(scores.shape[1])  # normalised scores are ≥ 0, so 0 is the empty portfolio
    for _ in range(k):
        gain = np.maximum(cover[None, :], scores).sum(axis=1)
        gain[chosen] = -np.inf
        best = int(np.argmax(gain))
        chosen.append(best)
        cover = np.maximum(cover, scores[best])
    return chosen


def unseen_by(target: str, quirks: Quirks = Quirks()) -> Callable[[str], bool]:
    """Whether a task's data may inform ``target``'s portfolio: not its environment (any gravity),
    or under the quirk switch not the target task itself."""
    if quirks.portfolio_excludes_task_only:
        return lambda task: task != target
    env = get_task(target).env_name
    return lambda task: get_task(task).env_name != env


def portfolio_for(
    matrix: pd.DataFrame,
    sources: dict[str, str],
    target: str,
    k: int,
    quirks: Quirks = Quirks(),
    configs: dict[str, Config] | None = None,
) -> list[str]:
    """Step 3 for one target: candidate ids in selection order, never informed by the target
    (its environment by default, its task only under the quirk switch). With ``configs`` a
    candidate whose configuration equals an earlier one's is left out, so no entry repeats."""
    unseen = unseen_by(target, quirks)
    cols = [t for t in matrix.columns if unseen(t)]
    rows = [c for c in matrix.index if unseen(sources[c])]
    if configs is not None:
        seen: set[tuple] = set()
        distinct = []
        for c in rows:
            key = tuple(sorted(configs[c].items()))
            if key not in seen:
                seen.add(key)
                distinct.append(c)
        rows = distinct
    if not cols or not rows:
        raise MetaPB2Error(
            f"no tasks or candidates left for target {target!r} once its environment is excluded"
        )
    sub = normalise_columns(matrix.loc[rows, cols])
    picked = greedy_select(sub.to_numpy(), k, quirks.portfolio_row_sums)
    return [rows[i] for i in picked]


def write_portfolios(
    out_dir: str | Path, candidates: list[Candidate], matrix: pd.DataFrame, portfolios: dict[str, list[str]]
) -> dict[str, Path]:
    out = ensure_writable_dir(out_dir)
    by_id = {c.id: c for c in candidates}
    (out / "candidates.json").write_text(json.dumps([asdict(c) for c in candidates], indent=2))
    matrix.to_parquet(out / "performance_matrix.parquet")
    paths = {}
    for target, ids in portfolios.items():
        entries = [{**by_id[i].config, "candidate": i, "source_task": by_id[i].source_task} for i in ids]
        paths[target] = out / f"{target}_portfolio.json"
        paths[target].write_text(json.dumps(entries, indent=2))
    return paths


def build_portfolios(
    source_tasks: list[str],
    targets: list[str],
    budget: Budget,
    space: SearchSpace,
    out_dir: str | Path,
    seeds: tuple[int, ...] = (0,),
    quirks: Quirks = Quirks(),
    n_configs: int = CANDIDATE_CONFIGS,
    intervals: int = CANDIDATE_INTERVALS,
    n_best: int = 1,
    size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """All three steps; writes candidates, the matrix and ``<target>_portfolio.json`` files. The
    default size is what a warm run of ``budget``'s population needs (P members + round-1 exploits).
    Every argument is checked before anything trains."""
    size = budget.population_size + exploits_per_round(budget.population_size) if size is None else size
    for seed in seeds:
        check_search(seed, n_configs, intervals, n_best)
    check_portfolio_sources(source_tasks, targets, len(seeds) * n_best, size, quirks)
    check_writable_dir(out_dir)
    say = progress or (lambda _: None)
    candidates = []
    for task in source_tasks:
        for seed in seeds:
            candidates += search_candidates(task, seed, budget, space, quirks, n_configs, intervals, n_best)
            say(f"candidates: {task} seed {seed}")
    matrix = performance_matrix(
        candidates, source_tasks, budget, space, seeds, quirks, intervals, lambda t: say(f"matrix: {t}")
    )
    sources = {c.id: c.source_task for c in candidates}
    configs = {c.id: c.config for c in candidates}
    portfolios = {t: portfolio_for(matrix, sources, t, size, quirks, configs) for t in targets}
    return write_portfolios(out_dir, candidates, matrix, portfolios)


def check_search(seed: int, n_configs: int, intervals: int, n_best: int) -> None:
    """Refuse a candidate search that cannot run, naming the argument."""
    if not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise MetaPB2Error(f"seed must be an integer in [0, 2^32), got {seed!r}")
    if n_configs < 1:
        raise MetaPB2Error(
            f"configs (random configurations per task and seed) must be positive, got {n_configs}"
        )
    if intervals < 1:
        raise MetaPB2Error(f"intervals (each candidate's training) must be positive, got {intervals}")
    if not 1 <= n_best <= n_configs:
        raise MetaPB2Error(
            f"best (candidates kept per task and seed) must be in [1, {n_configs}], got {n_best}"
        )


def check_portfolio_sources(
    source_tasks: list[str], targets: list[str], per_task: int, size: int, quirks: Quirks = Quirks()
) -> None:
    """Every target gets ``size`` distinct candidates from source tasks it may learn from
    (``per_task`` candidates per source task), or this says which target falls short and why."""
    for t in [*source_tasks, *targets]:
        get_task(t)
    if size < 1:
        raise MetaPB2Error(f"portfolio size must be positive, got {size}")
    for target in targets:
        unseen = unseen_by(target, quirks)
        usable = [t for t in source_tasks if unseen(t)]
        if not usable:
            raise MetaPB2Error(
                f"the source tasks {', '.join(source_tasks)} leave nothing outside the environment of target "
                f"{target!r} (leave-one-environment-out): add tasks of another environment"
            )
        if len(usable) * per_task < size:
            raise MetaPB2Error(
                f"a portfolio of {size} for {target!r} needs {size} candidates from {', '.join(usable)}, but "
                f"{len(usable)} task(s) × {per_task} candidate(s) each give {len(usable) * per_task}: "
                "keep more per search (--best), add seeds or tasks, or ask for a smaller --size"
            )
