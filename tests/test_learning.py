"""PPO really learns: PBT solves cart pole within the short budget."""

import numpy as np

from metapb2_core.run import RunRequest, execute_run


def test_pbt_short_budget_solves_cart_pole():
    record = execute_run(RunRequest("cart_pole-earth", "pbt", seed=0, budget="short"))
    evals = record.points[record.points.eval_is_fresh]
    best_per_point = evals.groupby("timesteps")["eval_return"].max()
    assert record.best_final_eval >= 400.0, best_per_point.to_dict()
    assert best_per_point.iloc[0] < 300.0  # it started far from solved: the score was learned
    assert np.isfinite(evals["eval_return"]).all()
    assert len(record.perturbations) == 14  # one exploit in each of the 14 rounds
