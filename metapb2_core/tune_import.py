"""A user's own Ray Tune experiment as one of our run records, so ``metapb2 meta`` makes meta-data
of it for TAF-PB2, MetaPriorPB2 and MultiTaskPB2 (and ``metapb2 report`` can rank it).

The experiment is read from its folder (``<storage_path>/<name>``), whatever scheduler ran it: each
trial folder's ``result.json`` (one JSON result a line, each with the trial's ``config`` at that
time) is a member's history. A change of configuration between two results of a trial is an
exploit at the earlier one (Tune's PBT restores another trial's checkpoint there); the trial it
cloned is read from ``pbt_global.txt`` where Tune's PBT wrote it, else left unknown (the member
itself). The user declares the space: every configuration must lie in it, so a parameter that the
experiment moved outside (Tune's PBT multiplies without clipping) is refused in one line naming the
trial, not silently clipped. The record names the experiment by folder name and a digest of its
results, never by an absolute path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metapb2_core.budgets import Budget
from metapb2_core.checks import run_checks, verdict
from metapb2_core.errors import MetaPB2Error
from metapb2_core.manifest import build_record
from metapb2_core.provenance import code_digest
from metapb2_core.rounds import Perturbation
from metapb2_core.run_ids import run_id as make_run_id
from metapb2_core.space import SearchSpace
from metapb2_core.store import RunRecord

BUDGET = "tune"  # the budget word of records made by Tune (as MethodScheduler's)


class TuneImportError(MetaPB2Error):
    pass


def _trial_dirs(experiment: Path) -> list[Path]:
    if not experiment.is_dir():
        raise TuneImportError(f"Tune experiment folder {experiment} does not exist or is not a folder")
    trials = sorted(p for p in experiment.iterdir() if (p / "result.json").is_file())
    if not trials:
        raise TuneImportError(
            f"{experiment}: no trial folders with a result.json; give the experiment's folder "
            "(<storage_path>/<name>), not the storage path or one trial"
        )
    return trials


def _results(trial: Path) -> list[dict]:
    lines = (trial / "result.json").read_text().splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):  # the line a killed experiment was writing: the results before it stand
                break
            raise TuneImportError(f"{trial / 'result.json'}, line {i}: not a JSON result") from None
    if not rows:
        raise TuneImportError(f"{trial / 'result.json'}: no results")
    return rows


def _clones(experiment: Path) -> dict[tuple[int, str], int]:
    """(member index, new configuration as JSON) → the index of the trial it cloned, from Tune's
    PBT log; experiment tags begin with the trial's index."""
    log = experiment / "pbt_global.txt"
    if not log.is_file():
        return {}
    out = {}
    for line in log.read_text().splitlines():
        try:
            target, clone, _, _, _, new = json.loads(line)
            key = (int(str(target).split("_")[0]), json.dumps(new, sort_keys=True))
            out[key] = int(str(clone).split("_")[0])
        except (ValueError, TypeError):
            continue  # a line of another format: that exploit's source stays unknown
    return out


def import_tune_experiment(
    experiment: str | Path,
    space: SearchSpace,
    task: str,
    *,
    metric: str,
    mode: str = "max",
    time_attr: str = "training_iteration",
    seed: int = 0,
    method: str = "tune",
) -> RunRecord:
    """The record of Tune experiment ``experiment`` on ``task``: a member per trial (in trial-id
    order), its results as points (``metric`` as the return; negated where ``mode`` is ``"min"``,
    so higher is better as our records read), configuration changes as perturbations. Checked as
    our runs are: returns finite, time increasing per member, every value in ``space``."""
    if mode not in ("max", "min"):
        raise TuneImportError(f"mode must be 'max' or 'min', got {mode!r}")
    exp = Path(experiment)
    trials = _trial_dirs(exp)
    histories = {t: _results(t) for t in trials}
    order = sorted(trials, key=lambda t: str(histories[t][0].get("trial_id", t.name)))
    tag_of = []  # our member → the trial's index in Tune's experiment tags (its trial id's suffix)
    for member, t in enumerate(order):
        suffix = str(histories[t][0].get("trial_id", "")).rsplit("_", 1)[-1]
        tag_of.append(int(suffix) if suffix.isdigit() else member)
    member_of = {tag: m for m, tag in enumerate(tag_of)}
    clones = _clones(exp)
    sign = 1.0 if mode == "max" else -1.0
    rows, perturbations, final_configs, digest = [], [], [], hashlib.sha256()
    for member, t in enumerate(order):
        previous = None
        for r in histories[t]:
            missing = [k for k in (metric, time_attr, "config") if k not in r]
            if missing:
                raise TuneImportError(f"trial {t.name}: a result lacks {missing}; its keys: {sorted(r)[:20]}")
            try:
                config = space.validate({p.name: r["config"].get(p.name) for p in space.params})
            except MetaPB2Error as e:
                raise TuneImportError(
                    f"trial {t.name}, {time_attr} {r[time_attr]}: {e} (declare the space the experiment "
                    "searched; values Tune's PBT moved outside it need wider bounds)"
                ) from None
            time = int(r[time_attr])
            if previous is not None:
                if time <= previous[0]:
                    raise TuneImportError(
                        f"trial {t.name}: {time_attr} goes from {previous[0]} back to {time} (a clone "
                        "restored at an earlier point); import with a time_attr that always grows"
                    )
                if config != previous[1]:
                    key = (tag_of[member], json.dumps(r["config"], sort_keys=True))
                    source = member_of.get(clones.get(key, -1), member)
                    perturbations.append(
                        Perturbation(
                            round=len(perturbations),
                            time=previous[0],
                            member=member,
                            cloned_from=source,
                            member_score=previous[2],
                            clone_score=float("nan"),
                            old_config=previous[1],
                            new_config=config,
                            diagnostics={"mode": "tune", "clone_known": key in clones},
                        )
                    )
            reward = sign * float(r[metric])
            rows.append(
                {
                    "member": member,
                    "training_iteration": int(r.get("training_iteration", len(rows) + 1)),
                    "timesteps": time,
                    **config,
                    "eval_return": reward,
                    "eval_is_fresh": True,
                    "wall_seconds": float(r.get("time_total_s", np.nan)),
                }
            )
            previous = (time, config, reward)
        final_configs.append(previous[1])
        digest.update((t / "result.json").read_bytes())
    perturbations.sort(key=lambda p: (p.time, p.member))
    perturbations = [Perturbation(**{**vars(p), "round": i}) for i, p in enumerate(perturbations)]
    points = pd.DataFrame(rows).sort_values(["timesteps", "member"], kind="stable").reset_index(drop=True)
    points["total_run_time"] = points["wall_seconds"].max()
    source = {"experiment": exp.name, "results_sha256": digest.hexdigest(), "trials": len(order)}
    ident = {
        "run_id": make_run_id(method, task, BUDGET, seed, exp.name, digest.hexdigest()[:8]),
        "task": task,
        "env": task,
        "context": "",
        "method": method,
        "seed": seed,
        "budget": BUDGET,
    }
    total = int(points["timesteps"].max())
    record = build_record(
        ident,
        points,
        perturbations,
        space,
        faithful=False,
        tag=exp.name,
        budget_sizes={
            "population_size": len(order),
            "interval": int(points["timesteps"].min()),
            "total_steps": total,
        },
        final_configs=final_configs,
        meta_tasks={},
        portfolio=None,
        code_version=code_digest(__name__),
        role="imported",
        scheduler="ray.tune (imported)",
        tune_experiment=source,
        trials={str(m): str(histories[t][0].get("trial_id", t.name)) for m, t in enumerate(order)},
        metric=metric,
        mode=mode,
        time_attr=time_attr,
    )
    sizes = Budget(BUDGET, len(order), 1, 1, 1, 1, 1, total, 1)
    record.meta.update(verdict(run_checks(record.points, record.perturbations, record.meta, sizes, space)))
    return record


def describe(record: RunRecord) -> dict[str, Any]:
    m = record.meta
    return {
        "run_id": m["run_id"],
        "members": int(record.points["member"].nunique()),
        "results": len(record.points),
        "exploits": len(record.perturbations),
        "status": m["status"],
    }
