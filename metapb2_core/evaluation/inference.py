"""Inference on independent units, beside the paper's test.

What counts as independent here:

- **Units are tasks, each counted once.** Tasks of one environment whose environment parameters
  are equal under the study's quirks are one task by construction (the faithful Pendulum never
  reads its gravity, so its five contexts are one task): they form one unit, whose score per
  method, seed and point is the mean over its tasks. The rule is decided from the task registry
  before any result is read (``task_units``), and it holds everywhere below.
- **Seeds are the replicates.** A seed's runs of every method on a task share their seed (the same
  initial population, the same environment draws), so a bootstrap over seeds draws the same seeds
  for every method of a task (paired), independently per task.
- **Evaluation points are repeated measures** of the same runs: the primary tests use one point at
  a time, never points stacked as blocks. The paper's test stacks the 15 points of every task as
  if they were independent blocks (protocol.md §6.5); ``paper_test`` keeps it, labelled so.

Tools: the paper's own ``autorank`` (Herbold 2020) for its test, which checks normality and
homoscedasticity and picks the omnibus test and post-hoc itself; ``rliable`` (Agarwal et al.,
NeurIPS 2021) for the interquartile mean and the probability of improvement. rliable's bootstrap
(``rliable.library``) imports ``arch``, whose releases that rliable 1.2 accepts (< 8) do not import
under pandas 3, so the stratified bootstrap is the few lines of ``_draws`` here (seeds resampled
with replacement within each task), and rliable's metrics are applied to every draw.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from autorank import autorank
from rliable import metrics as rly
from scipy import stats

from metapb2_core.envs import TASKS, get_task
from metapb2_core.evaluation.stats import Comparison, compare
from metapb2_core.evaluation.stats import groups as nemenyi_groups
from metapb2_core.quirks import Quirks

BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 20250101  # fixed: the report's intervals are the same every time it is written
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Units:
    """The independent units of a study: task → unit, and the groups merged into one unit."""

    of_task: dict[str, str]
    groups: tuple[tuple[str, ...], ...]  # two or more tasks that are one task by construction

    @property
    def names(self) -> list[str]:
        return sorted(set(self.of_task.values()))

    @property
    def n(self) -> int:
        return len(self.names)

    def rule(self) -> str:
        if not self.groups:
            return "every task is its own unit: no two tasks have the same environment parameters"
        merged = "; ".join(f"{{{', '.join(g)}}} as `{self.of_task[g[0]]}`" for g in self.groups)
        return (
            "tasks of one environment whose environment parameters are equal under the study's "
            "mode are one task by construction and count once, as the mean over their contexts: "
            f"{merged} ({len(self.of_task)} tasks, {self.n} units)"
        )


def task_units(tasks: list[str], quirks: Quirks) -> Units:
    """Merge the tasks whose environments are identical under ``quirks`` (decided from the task
    registry, not from results)."""
    by_env: dict[tuple[str, str], list[str]] = {}
    for task in sorted(tasks):
        if task not in TASKS:  # a task of the user's own (a Tune experiment): its own unit
            by_env[(task, task)] = [task]
            continue
        t = get_task(task)
        params = repr(t.env_params(quirks))
        by_env.setdefault((t.env_name, params), []).append(task)
    of_task, groups = {}, []
    for (env, _), members in sorted(by_env.items()):
        name = members[0] if len(members) == 1 else f"{env} ({len(members)} contexts)"
        if len(members) > 1:
            groups.append(tuple(members))
        of_task.update({m: name for m in members})
    return Units(of_task, tuple(groups))


def unit_scores(scores: pd.DataFrame, units: Units) -> pd.DataFrame:
    """Run scores per unit (``scores`` as ``Evaluation.scores``): columns unit, env, method, seed,
    point, timesteps, score; a merged unit's score is the mean over its tasks."""
    df = scores.assign(unit=scores["task"].map(units.of_task), env=scores["task"].map(_env))
    df = df.dropna(subset=["unit", "score"])
    out = df.groupby(["unit", "env", "method", "seed", "point"], sort=True).agg(
        timesteps=("timesteps", "min"), score=("score", "mean")
    )
    return out.reset_index()


def _env(task: str) -> str:
    return get_task(task).env_name if task in TASKS else task


@dataclass(frozen=True)
class Cube:
    """Scores as an array [point, unit, method, seed] over the (unit, seed) pairs where every
    method has a score at every point; ``seeds[u]`` is how many seeds unit u has (the rest NaN)."""

    values: np.ndarray
    points: list[int]
    timesteps: list[int]
    units: list[str]
    envs: list[str]
    methods: list[str]
    seeds: np.ndarray
    seed_names: list[str]  # the seeds of each slot: their numbers where every unit has the same

    @property
    def max_seeds(self) -> int:
        return int(self.values.shape[-1])

    def at(self, point: int) -> np.ndarray:
        return self.values[self.points.index(point)]


def score_cube(us: pd.DataFrame, methods: list[str]) -> Cube:
    points = sorted(us["point"].unique())
    keep = us.groupby(["unit", "seed"])[["method", "point"]].apply(
        lambda g: g["method"].nunique() == len(methods) and len(g) == len(methods) * len(points)
    )
    us = us.set_index(["unit", "seed"]).loc[keep[keep].index].reset_index()
    units = sorted(us["unit"].unique())
    seeds_of = {u: sorted(us.loc[us["unit"] == u, "seed"].unique()) for u in units}
    width = max((len(s) for s in seeds_of.values()), default=0)
    values = np.full((len(points), len(units), len(methods), width), np.nan)
    index = us.set_index(["point", "unit", "method", "seed"])["score"]
    for ui, u in enumerate(units):
        for si, s in enumerate(seeds_of[u]):
            for mi, m in enumerate(methods):
                values[:, ui, mi, si] = [index[(p, u, m, s)] for p in points]
    steps = us.groupby("point")["timesteps"].min()
    env = us.drop_duplicates("unit").set_index("unit")["env"]
    return Cube(
        values,
        points,
        [int(steps[p]) for p in points],
        units,
        [str(env[u]) for u in units],
        methods,
        np.array([len(seeds_of[u]) for u in units]),
        _seed_names(list(seeds_of.values()), width),
    )


def _seed_names(seeds: list[list], width: int) -> list[str]:
    same = all(s == seeds[0] for s in seeds)
    return [str(s) for s in seeds[0]] if seeds and same else [f"#{i + 1}" for i in range(width)]


def _ranks(means: np.ndarray) -> np.ndarray:
    """Ranks along the method axis (last), 1 = highest, ties averaged."""
    return stats.rankdata(-means, axis=-1, method="average")


def _normalised(means: np.ndarray) -> np.ndarray:
    """Min–max across methods (last axis), as ``scores.normalise``: best 1, worst 0, all equal 0."""
    low, high = means.min(axis=-1, keepdims=True), means.max(axis=-1, keepdims=True)
    span = np.where(high > low, high - low, np.inf)
    return (means - low) / span


def _seed_means(values: np.ndarray) -> np.ndarray:
    return np.nanmean(values, axis=-1)


def _draws(rng: np.random.Generator, seeds: np.ndarray, width: int, reps: int, tasks: bool) -> tuple:
    """One stratified bootstrap: per draw, the units (resampled with replacement when ``tasks``)
    and, within each drawn unit, its seeds resampled with replacement (the same seeds for every
    method: they are paired). Returns (unit index [reps, n], seed index [reps, n, width], mask of
    the seed slots in use [reps, n, width])."""
    n = len(seeds)
    unit = rng.integers(0, n, size=(reps, n)) if tasks else np.broadcast_to(np.arange(n), (reps, n))
    have = seeds[unit]  # [reps, n]
    seed = (rng.random((reps, n, width)) * have[..., None]).astype(int)
    mask = np.arange(width)[None, None, :] < have[..., None]
    return unit, seed, mask


def _resampled(values: np.ndarray, unit: np.ndarray, seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Seed means of every bootstrap draw: values [point, unit, method, seed] → [reps, point, unit,
    method] (or [unit, method, seed] → [reps, unit, method])."""
    flat = values.ndim == 3
    v = values[None] if flat else values
    picked = v[:, unit]  # [point, reps, n, method, seed]
    index = np.broadcast_to(seed[None, :, :, None, :], picked.shape)
    picked = np.take_along_axis(picked, index, axis=-1)
    picked = np.where(np.broadcast_to(mask[None, :, :, None, :], picked.shape), picked, np.nan)
    means = np.moveaxis(np.nanmean(picked, axis=-1), 1, 0)  # [reps, point, n, method]
    return means[:, 0] if flat else means


def _interval(samples: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - CONFIDENCE) / 2 * 100
    return np.percentile(samples, tail, axis=axis), np.percentile(samples, 100 - tail, axis=axis)


@dataclass
class PaperTest:
    """The paper's test (protocol.md §6.5.4): autorank over all points stacked as blocks."""

    omnibus: str
    p_value: float
    cd: float | None
    mean_ranks: pd.Series
    all_normal: bool
    homoscedastic: bool
    n_blocks: int
    tied_blocks: int  # blocks where every method has the same value
    first_point_identical: list[str]  # methods with one value at point 1 on every task
    groups: list[list[str]]


@dataclass
class Inference:
    units: Units
    cube: Cube
    alpha: float
    reps: int
    mean_ranks: pd.DataFrame  # per method: final/overall estimate and 95 % intervals
    tests: dict[int, Comparison]  # point → Friedman/Nemenyi on units (seed means)
    final_point: int
    env_ranks: pd.DataFrame  # env × method: mean final rank over the env's units
    pairwise: pd.DataFrame  # one row per pair of methods
    per_unit: pd.DataFrame  # per unit: Kruskal–Wallis over the methods' seeds at the final point
    aggregates: pd.DataFrame  # per method: IQM and mean of run-normalised final scores, intervals
    profile: pd.DataFrame  # τ × method: fraction of runs above τ, with intervals
    paper: PaperTest | None
    notes: list[str] = field(default_factory=list)

    @property
    def n_seeds(self) -> int:
        return int(self.cube.seeds.max()) if len(self.cube.seeds) else 0

    @property
    def final_test(self) -> Comparison | None:
        return self.tests.get(self.final_point)

    def supported_pairs(self) -> list[tuple[str, str]]:
        """(better, worse) pairs the Nemenyi test separates at the final point, on units."""
        return _separated(self.final_test, self.alpha)


def separated_pairs(ranks: pd.Series, cd: float | None, p: float, alpha: float) -> list[tuple[str, str]]:
    """(better, worse) pairs a Friedman/Nemenyi comparison separates: the omnibus test rejects at
    ``alpha`` and their mean ranks (``ranks``, 1 = best) lie more than the critical difference apart."""
    if cd is None or p >= alpha:
        return []
    return [
        (a, b) if ranks[a] < ranks[b] else (b, a)
        for a, b in itertools.combinations(ranks.index, 2)
        if abs(ranks[a] - ranks[b]) > cd
    ]


def _separated(test: Comparison | None, alpha: float) -> list[tuple[str, str]]:
    if test is None:
        return []
    return separated_pairs(test.mean_ranks, test.cd, test.friedman.p_value, alpha)


def infer(
    scores: pd.DataFrame,
    values: pd.DataFrame,
    quirks: Quirks,
    aligned_every: int | None = None,
    alpha: float = 0.05,
    reps: int = BOOTSTRAP_REPS,
) -> Inference:
    """Everything the report and ``method_ranks`` infer (``scores``/``values`` as ``Evaluation``'s;
    ``aligned_every``: the paper's evaluation interval in env steps, whose multiples are tested
    besides the final point)."""
    methods = sorted(scores["method"].unique())
    units = task_units(sorted(scores["task"].unique()), quirks)
    cube = score_cube(unit_scores(scores, units), methods)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    final = cube.points[-1]
    notes = []
    if cube.max_seeds < 2:
        notes.append("one seed: the intervals over seeds are points (no replicate to resample)")
    chosen = [
        p
        for p, t in zip(cube.points, cube.timesteps, strict=True)
        if aligned_every and t % aligned_every == 0
    ]
    tests = {}
    for p in sorted({*chosen, final}):
        table = pd.DataFrame(_seed_means(cube.at(p)), index=cube.units, columns=methods)
        if table.shape[0] >= 2:
            tests[p] = compare(table, alpha)
    if final not in tests:
        notes.append(f"no test at the final point: {cube.values.shape[1]} unit(s)")
    return Inference(
        units=units,
        cube=cube,
        alpha=alpha,
        reps=reps,
        mean_ranks=_mean_rank_intervals(cube, rng, reps),
        tests=tests,
        final_point=final,
        env_ranks=_env_ranks(cube),
        pairwise=_pairwise(cube, rng, reps, tests.get(final), alpha),
        per_unit=_per_unit(cube, alpha),
        aggregates=_aggregates(cube, rng, reps),
        profile=_profile(cube, rng, reps),
        paper=paper_test(values, alpha),
        notes=notes,
    )


def _mean_rank_intervals(cube: Cube, rng: np.random.Generator, reps: int) -> pd.DataFrame:
    """Per method: the final and overall mean rank over units and their 95 % intervals, from a
    bootstrap over seeds (units fixed) and over tasks and seeds; numeric columns ``<what> rank``,
    ``<what> low|high (<over>)`` for what in final, overall and over in seeds, tasks+seeds."""
    out = {}
    for label, values in (("final", cube.values[-1:]), ("overall", cube.values)):
        out[f"{label} rank"] = _ranks(_seed_means(values)).mean(axis=(0, 1))
        for kind, tasks in (("seeds", False), ("tasks+seeds", True)):
            unit, seed, mask = _draws(rng, cube.seeds, cube.max_seeds, reps, tasks)
            means = _resampled(values, unit, seed, mask)  # [reps, points, n, method]
            out[f"{label} low ({kind})"], out[f"{label} high ({kind})"] = _interval(
                _ranks(means).mean(axis=(1, 2))
            )
    out["final normalised"] = _normalised(_seed_means(cube.values[-1])).mean(axis=0)
    out["overall normalised"] = _normalised(_seed_means(cube.values)).mean(axis=(0, 1))
    table = pd.DataFrame(out, index=cube.methods)
    table.index.name = "method"
    return table.sort_values("final rank", kind="stable")


def _env_ranks(cube: Cube) -> pd.DataFrame:
    ranks = _ranks(_seed_means(cube.values[-1]))  # [unit, method]
    df = pd.DataFrame(ranks, index=pd.Index(cube.envs, name="environment"), columns=cube.methods)
    table = df.groupby(level=0).mean()
    table.insert(0, "units", df.groupby(level=0).size())
    return table


def _pairwise(
    cube: Cube, rng: np.random.Generator, reps: int, test: Comparison | None, alpha: float
) -> pd.DataFrame:
    final = cube.values[-1]
    norm = _normalised(_seed_means(final)).mean(axis=0)  # [method]
    unit, seed, mask = _draws(rng, cube.seeds, cube.max_seeds, reps, True)
    boot = _normalised(_resampled(final, unit, seed, mask)).mean(axis=1)  # [reps, method]
    runs = _run_normalised(final, cube.seeds)  # [unit, method, seed]
    pairs = list(itertools.combinations(range(len(cube.methods)), 2))
    separated = set(_separated(test, alpha))
    adjusted = 1 - alpha / max(len(pairs), 1)
    rows = []
    for i, j in pairs:
        a, b = cube.methods[i], cube.methods[j]
        diff = boot[:, i] - boot[:, j]
        lo, hi = _interval(diff)
        tail = (1 - adjusted) / 2 * 100
        blo, bhi = np.percentile(diff, tail), np.percentile(diff, 100 - tail)
        poi = _improvement(runs[:, i], runs[:, j], cube.seeds)
        plo, phi = _interval(_improvement_draws(runs[:, i], runs[:, j], unit, seed, mask))
        differ = (a, b) in separated or (b, a) in separated
        rows.append(
            {
                "pair": f"{a} − {b}",
                "Δ norm. score": norm[i] - norm[j],
                "95% CI": f"{lo:+.2f} to {hi:+.2f}",
                "excludes 0": "yes" if lo > 0 or hi < 0 else "no",
                f"excludes 0 (Bonferroni, {len(pairs)} pairs)": "yes" if blo > 0 or bhi < 0 else "no",
                "P(a > b)": poi,
                "P 95% CI": f"{plo:.2f}–{phi:.2f}",
                "Nemenyi (final, units)": "differ" if differ else "—",
            }
        )
    if not rows:  # one method: nothing to compare
        return pd.DataFrame(columns=["pair", "Δ norm. score", "95% CI", "excludes 0"]).set_index("pair")
    return pd.DataFrame(rows).set_index("pair")


def _run_normalised(final: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Each run's final score normalised by its unit's range over every run of every method
    [unit, method, seed] (NaN where a unit has fewer seeds)."""
    low = np.nanmin(final, axis=(1, 2), keepdims=True)
    high = np.nanmax(final, axis=(1, 2), keepdims=True)
    span = np.where(high > low, high - low, np.inf)
    return (final - low) / span


def _improvement(x: np.ndarray, y: np.ndarray, seeds: np.ndarray) -> float:
    """rliable's probability of improvement P(X > Y) (ties count half), averaged over units;
    ``x``, ``y``: [unit, seed] run scores."""
    per_unit = [
        rly.probability_of_improvement(x[u, : int(n)][:, None], y[u, : int(n)][:, None])
        for u, n in enumerate(seeds)
    ]
    return float(np.mean(per_unit))


def _improvement_draws(
    x: np.ndarray, y: np.ndarray, unit: np.ndarray, seed: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """``_improvement`` of every bootstrap draw at once (the same count as rliable's, vectorised):
    per drawn unit, the share of (x run, y run) pairs with x > y, ties counting half."""
    xs = np.take_along_axis(x[unit], seed, axis=-1)  # [reps, n, seed]
    ys = np.take_along_axis(y[unit], seed, axis=-1)
    wins = (xs[..., :, None] > ys[..., None, :]) + 0.5 * (xs[..., :, None] == ys[..., None, :])
    valid = mask[..., :, None] & mask[..., None, :]
    per_unit = np.where(valid, wins, 0).sum(axis=(-1, -2)) / valid.sum(axis=(-1, -2))
    return per_unit.mean(axis=-1)


def _per_unit(cube: Cube, alpha: float) -> pd.DataFrame:
    final = cube.values[-1]
    rows = {}
    for u, name in enumerate(cube.units):
        n = int(cube.seeds[u])
        groups = [final[u, m, :n] for m in range(len(cube.methods))]
        means = final[u, :, :n].mean(axis=1)
        best = ", ".join(cube.methods[m] for m in np.flatnonzero(means == means.max()))
        if np.unique(np.concatenate(groups)).size == 1:
            h, p, verdict = math.nan, math.nan, "all equal"
        elif n < 2:
            h, p, verdict = math.nan, math.nan, "one seed: no test"
        else:
            h, p = stats.kruskal(*groups)
            verdict = "decided" if p < alpha else "within noise"
        rows[name] = {"seeds": n, "best (seed mean)": best, "Kruskal–Wallis H": h, "p": p, "verdict": verdict}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "task (unit)"
    return table


def _aggregates(cube: Cube, rng: np.random.Generator, reps: int) -> pd.DataFrame:
    """rliable's interquartile mean and mean of the run-normalised final scores per method, with
    stratified bootstrap intervals (seeds resampled within each unit). rliable takes a (runs ×
    tasks) matrix, so every unit enters with the seed count all units have."""
    k = int(cube.seeds.min())
    runs = _run_normalised(cube.values[-1], cube.seeds)[..., :k]  # [unit, method, seed]
    seeds = np.full(len(cube.units), k)
    unit, seed, _ = _draws(rng, seeds, k, reps, False)
    rows = {}
    for m, name in enumerate(cube.methods):
        matrix = runs[:, m].T  # [seed, unit]
        boot = np.take_along_axis(runs[:, m][None], seed, axis=-1).transpose(0, 2, 1)  # [reps, seed, unit]
        row: dict[str, object] = {}
        for label, metric in (("IQM", rly.aggregate_iqm), ("mean", rly.aggregate_mean)):
            lo, hi = _interval(np.array([metric(b) for b in boot]))
            row[label] = float(metric(matrix))
            row[f"{label} 95% CI"] = f"{lo:.2f}–{hi:.2f}"
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table.sort_values("IQM", ascending=False, kind="stable")


def _flat(per_method: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    return np.concatenate([per_method[u, : int(n)] for u, n in enumerate(seeds)])


def _profile(cube: Cube, rng: np.random.Generator, reps: int, steps: int = 21) -> pd.DataFrame:
    """Performance profile (rliable): the fraction of runs whose run-normalised final score exceeds
    τ, for τ from 0 to 1, with bootstrap intervals over seeds."""
    runs = _run_normalised(cube.values[-1], cube.seeds)
    taus = np.linspace(0, 1, steps)
    unit, seed, mask = _draws(rng, cube.seeds, cube.max_seeds, min(reps, 500), False)
    rows = []
    for m, name in enumerate(cube.methods):
        flat = _flat(runs[:, m], cube.seeds)
        boot = np.array(
            [
                [(np.take_along_axis(runs[:, m], seed[r], axis=1)[mask[r]] > t).mean() for t in taus]
                for r in range(len(seed))
            ]
        )
        lo, hi = _interval(boot)
        rows += [
            {"method": name, "tau": t, "fraction": float((flat > t).mean()), "lo": lo[k], "hi": hi[k]}
            for k, t in enumerate(taus)
        ]
    return pd.DataFrame(rows)


def paper_test(values: pd.DataFrame, alpha: float = 0.05) -> PaperTest | None:
    """autorank with its default settings over every (point, task) block, as the paper ran it
    (``values``: (point, task) × method seed means, ``Evaluation.values``)."""
    if values.shape[0] < 5 or values.shape[1] < 2:
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # autorank prints its rank table even when not verbose
        result = autorank(values.reset_index(drop=True), alpha=alpha, verbose=False)
    ranks = result.rankdf["meanrank"].sort_values()
    cd = float(result.cd) if result.cd is not None else None
    first = values.xs(values.index.get_level_values("point").min(), level="point")
    same = [m for m in values.columns if (first[m] == first.iloc[:, 0]).all()] if first.shape[1] else []
    bars = nemenyi_groups(ranks, cd) if cd is not None else []
    return PaperTest(
        omnibus=str(result.omnibus),
        p_value=float(result.pvalue),
        cd=cd,
        mean_ranks=ranks,
        all_normal=bool(result.all_normal),
        homoscedastic=bool(result.homoscedastic),
        n_blocks=int(values.shape[0]),
        tied_blocks=int((values.nunique(axis=1) == 1).sum()),
        first_point_identical=same if len(same) > 1 else [],
        groups=bars,
    )


def per_seed_ranks(inf: Inference) -> dict[str, pd.DataFrame]:
    """Each seed ranked alone on units: {"final": method × seed, "overall": method × seed} mean
    ranks, over the seed slots every unit has (the k-th seed of each unit; in a complete study
    the same seed everywhere)."""
    cube = inf.cube
    k = int(cube.seeds.min())
    out = {}
    for label, values in (("final", cube.values[-1:]), ("overall", cube.values)):
        ranks = _ranks(values[..., :k].transpose(3, 0, 1, 2))  # [seed, point, unit, method]
        out[label] = pd.DataFrame(ranks.mean(axis=(1, 2)).T, index=cube.methods, columns=cube.seed_names[:k])
    return out
