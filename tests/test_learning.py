"""PPO really learns: PBT solves cart pole within the short budget (the run of `metapb2 run` that
tests/test_resume.py also compares resumed runs with)."""

import numpy as np
import pytest


@pytest.mark.slow  # one short-budget run, ~2 min on 2 cores: run with -m slow
def test_pbt_short_budget_solves_cart_pole(short_pbt_record):
    record = short_pbt_record
    evals = record.points[record.points.eval_is_fresh]
    best_per_point = evals.groupby("timesteps")["eval_return"].max()
    assert record.best_final_eval >= 400.0, best_per_point.to_dict()
    assert best_per_point.iloc[0] < 300.0  # it started far from solved: the score was learned
    assert np.isfinite(evals["eval_return"]).all()
    assert len(record.perturbations) == 14  # one exploit in each of the 14 rounds
