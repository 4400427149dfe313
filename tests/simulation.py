"""A population without PPO, for method tests: each interval a member gains objective(config) + noise,
and the lower quantile clones the upper one and asks the method, through the real loop's round."""

import math

import numpy as np
import pandas as pd

from metapb2_core.rounds import Suggestion, perturbation_round


def lr_objective(shift: float = 3.5):
    """Best at lr = 10^-shift."""
    return lambda c: 10 * (1 - (math.log10(c["lr"]) + shift) ** 2)


def simulate(method, seed, rounds, objective=None, n=4, noise=0.5):
    """Returns the final configurations, the suggestions and the record rows."""
    rng = np.random.default_rng(seed)
    f = objective or lr_objective()
    configs = method.initial_configs(n)
    reward, rows, suggestions = np.zeros(n), [], []
    for r in range(1, rounds + 1):
        time = r * 1000
        reward += np.array([f(c) for c in configs]) + rng.normal(0, noise, n)
        rows += [{"member": i, "time": time, **configs[i], "reward": reward[i]} for i in range(n)]
        if not method.perturbs or r == rounds:
            continue
        for p in perturbation_round(
            method, method.space, reward.copy(), configs, r, time, pd.DataFrame(rows), rng
        ):
            suggestions.append(Suggestion(p.new_config, p.diagnostics))
            configs[p.member], reward[p.member] = p.new_config, reward[p.cloned_from]
    return configs, suggestions, pd.DataFrame(rows)
