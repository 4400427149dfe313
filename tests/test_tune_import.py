"""A user's own Ray Tune experiments become meta-data: `metapb2 import-tune` turns an experiment
folder (any scheduler; here Tune's own PBT) into a run record of the user's mixed space, `metapb2
meta --method tune` into meta tables, and TAF-PB2 and MetaPriorPB2 read them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from metapb2_core.ask_tell import AskTellPopulation
from metapb2_core.cli import main as metapb2
from metapb2_core.errors import MetaPB2Error
from metapb2_core.space import SearchSpace
from metapb2_core.store import read_record, record_ids
from metapb2_core.tune_import import import_tune_experiment

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SPACE = {"lr": [1e-5, 0.1, "log"], "batch": ["choice", [16, 32, 64]]}
PEAKS = {"alpha": -3.0}  # one experiment: a meta method needs one other task


@pytest.fixture(scope="module")
def experiments(ray_head, tmp_path_factory):
    """An experiment of Tune's own PBT (not ours) on the toy trainable, per task of PEAKS."""
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    from metapb2_assets import ray_cluster

    sys.path.insert(0, str(EXAMPLES))
    import toy_tune

    ray_cluster.connect(ray_head, 1)
    ray.cloudpickle.register_pickle_by_value(toy_tune)
    storage = tmp_path_factory.mktemp("tune")
    for task, peak in PEAKS.items():
        pbt = PopulationBasedTraining(
            time_attr="training_iteration",
            metric="score",
            mode="max",
            perturbation_interval=2,
            hyperparam_mutations={"lr": tune.loguniform(1e-5, 1e-1), "batch": [16, 32, 64]},
            resample_probability=1.0,  # PBT's ×1.2 would leave the bounds; resampling stays in them
            synch=True,  # every exploit at a perturbation point of all trials
        )
        tune.Tuner(
            tune.with_resources(toy_tune.toy_trainable, {"cpu": 0.25}),
            param_space={
                "peak": peak,
                "checkpoint_every": 2,
                "lr": tune.loguniform(1e-5, 1e-1),
                "batch": tune.choice([16, 32, 64]),
            },
            # not reuse_actors=True: with it Tune wrote 24 of the 32 results here
            tune_config=tune.TuneConfig(scheduler=pbt, num_samples=4),
            run_config=tune.RunConfig(
                name=f"pbt-{task}", stop={"training_iteration": 6}, storage_path=str(storage), verbose=0
            ),
        ).fit()
    return storage


def test_tune_experiments_become_meta_data_that_taf_and_metaprior_read(experiments, tmp_path, capsys):
    runs, meta = tmp_path / "runs", tmp_path / "meta"
    for task in PEAKS:
        code = metapb2(
            ["import-tune", str(experiments / f"pbt-{task}"), "--task", task, "--space", json.dumps(SPACE),
             "--metric", "score", "--out", str(runs)]
        )  # fmt: skip
        assert code == 0, capsys.readouterr().err
    ids = record_ids(runs)
    assert len(ids) == len(PEAKS)
    for rid in ids:
        record = read_record(runs, rid)
        m, points = record.meta, record.points
        assert m["status"] == "passed" and m["method"] == "tune" and m["role"] == "imported"
        assert "/" not in json.dumps(m["tune_experiment"]) and str(experiments) not in json.dumps(m)
        folder = experiments / m["tune_experiment"]["experiment"]
        results = sum(len(f.read_text().splitlines()) for f in folder.glob("*/result.json"))
        assert sorted(points["member"].unique()) == [0, 1, 2, 3] and len(points) == results  # none lost
        assert set(points["batch"]) <= {16, 32, 64} and points["batch"].dtype == np.int64
        assert points["lr"].between(1e-5, 0.1).all()
        # every change of a member's configuration is one exploit, at the last result before it
        changes = 0
        for _, member in points.sort_values("timesteps").groupby("member"):
            configs = list(zip(member["lr"], member["batch"], strict=True))
            changes += sum(a != b for a, b in zip(configs, configs[1:], strict=False))
        assert len(record.perturbations) == changes > 0
        at = set(zip(points["member"], points["timesteps"], strict=True))
        assert all((p.member, p.timesteps) in at for p in record.perturbations.itertuples())
        diags = [json.loads(d) for d in record.perturbations["diagnostics"]]
        assert all(d["clone_known"] for d in diags)  # Tune's pbt_global.txt named every source
        # the cloned member's score at the exploit is the one the clone continues from
        for p in record.perturbations.itertuples():
            assert p.cloned_from != p.member
        assert m["budget_sizes"]["population_size"] == 4

    assert metapb2(["meta", str(runs), "--method", "tune", "--out", str(meta)]) == 0
    for method in ("taf", "metaprior"):
        pop = AskTellPopulation.create(method, SPACE, size=4, seed=0, task="gamma", meta=meta)
        score = np.zeros(4)
        for t in range(1, 6):
            for member, config in enumerate(pop.ask()):
                assert config["batch"] in (16, 32, 64) and 1e-5 <= config["lr"] <= 0.1
                score[member] += 1 - (np.log10(config["lr"]) + 2.5) ** 2
                pop.tell(member, t, float(score[member]))
            if t < 5:
                for p in pop.perturb():
                    score[p.member] = score[p.cloned_from]
        record = pop.to_record("gamma", 0)
        assert sorted(record.meta["meta_tasks"]) == sorted(PEAKS), method
        assert record.meta["status"] == "passed"


def _experiment(folder: Path, trials: dict[int, list[tuple[int, float, int, float]]], clones=()) -> Path:
    """A hand-made experiment folder: trial index → [(iteration, lr, batch, score)]."""
    for index, rows in trials.items():
        trial = folder / f"trainable_abc_{index:05d}_{index}_lr=x_2026"
        trial.mkdir(parents=True)
        lines = [
            json.dumps({"trial_id": f"abc_{index:05d}", "training_iteration": it, "score": score,
                        "time_total_s": 0.1 * it, "config": {"lr": lr, "batch": batch, "other": 1}})
            for it, lr, batch, score in rows
        ]  # fmt: skip
        (trial / "result.json").write_text("\n".join(lines) + "\n")
    if clones:
        (folder / "pbt_global.txt").write_text("\n".join(json.dumps(c) for c in clones) + "\n")
    return folder


def test_a_hand_made_experiment_reads_value_for_value(tmp_path):
    space = SearchSpace.from_dict(SPACE)
    exp = _experiment(
        tmp_path / "exp",
        {0: [(1, 0.01, 16, 1.0), (2, 0.01, 16, 2.0), (3, 0.001, 32, 5.0)],
         1: [(1, 0.001, 32, 2.0), (2, 0.001, 32, 4.0), (3, 0.001, 32, 6.0)]},
        clones=[["0_lr=x", "1_lr=x", 2, 2, {}, {"lr": 0.001, "batch": 32, "other": 1}]],
    )  # fmt: skip
    with (exp / "trainable_abc_00001_1_lr=x_2026" / "result.json").open("a") as f:
        f.write('{"trial_id": "abc_0')  # the line a killed experiment was writing
    record = import_tune_experiment(exp, space, "toy", metric="score", mode="min")
    p = record.points.sort_values(["member", "timesteps"])
    assert p["eval_return"].tolist() == [-1.0, -2.0, -5.0, -2.0, -4.0, -6.0]  # min: negated
    assert p["batch"].tolist() == [16, 16, 32, 32, 32, 32]
    (row,) = record.perturbations.itertuples()
    assert (row.timesteps, row.member, row.cloned_from, row.old_lr, row.new_lr) == (2, 0, 1, 0.01, 0.001)
    assert record.meta["final_configs"] == [{"lr": 0.001, "batch": 32}, {"lr": 0.001, "batch": 32}]


@pytest.mark.parametrize(
    "trials, args, match",
    [
        ({0: [(1, 0.5, 16, 1.0)]}, {}, r"'lr' = 0.5 lies outside .*wider bounds"),
        ({0: [(1, 0.01, 48, 1.0)]}, {}, r"'batch'"),
        ({0: [(1, 0.01, 16, 1.0)]}, {"metric": "reward"}, r"lacks \['reward'\]; its keys: \["),
        ({0: [(2, 0.01, 16, 1.0), (1, 0.01, 16, 2.0)]}, {}, r"goes from 2 back to 1"),
        ({}, {}, r"no trial folders with a result.json"),
        ({0: [(1, 0.01, 16, 1.0)]}, {"mode": "maximum"}, r"mode must be 'max' or 'min'"),
    ],
)
def test_an_experiment_that_does_not_fit_is_one_line_naming_the_trial(tmp_path, trials, args, match):
    exp = _experiment(tmp_path / "exp", trials)
    exp.mkdir(exist_ok=True)
    with pytest.raises(MetaPB2Error, match=match) as e:
        import_tune_experiment(exp, SearchSpace.from_dict(SPACE), "toy", **{"metric": "score", **args})
    assert "\n" not in str(e.value)
