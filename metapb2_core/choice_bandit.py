"""The categorical side of mixed-input PB2: a time-varying EXP3 bandit per categorical parameter.

PB2-Mix (Parker-Holder, Nguyen, Desai, Roberts, "Tuning Mixed Input Hyperparameters on the Fly for
Efficient Population Based AutoRL", NeurIPS 2021) picks the categories of a batch with a time-varying
EXP3 bandit and the continuous (and integer) values with the time-varying GP conditioned on them;
CoCaBO (Ru et al., ICML 2020) keeps one EXP3 agent per categorical variable. We follow CoCaBO's
factorisation (one agent per parameter: the arms stay few when there are several categorical
parameters) and PB2-Mix's time variation, here as discounting: each round's log-weights are shrunk
by ``FORGET`` before its rewards are added, so a choice that was best early loses its lead once
another does better.

The agent has no state of its own: its weights are recomputed from the data table, round by round
(a round is one end time), with each round's importance weights taken from the probabilities the
same rule gives from the rounds before it. So a resumed run, a Tune scheduler and a checkpoint need
nothing beyond the data table. The plays are the transitions that start at a member's new
configuration; a play's reward is its reward change per step, min–max scaled to [0, 1] among all
of its round's transitions (EXP3 wants bounded rewards; the scale of a task's returns is not known
in advance).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from metapb2_core.space import ChoiceParam

GAMMA = 0.2  # share of uniform exploration in each probability (Auer et al. 2002's γ)
ETA = 1.0  # learning rate per round on the importance-weighted mean reward (few rounds: a large one)
FORGET = 0.2  # share of the log-weights forgotten per round (the time variation)


def plays(records: pd.DataFrame, explore_rows: list[dict], trans: pd.DataFrame) -> pd.DataFrame:
    """The transitions the bandit chose: each starts at an explore row (a member's new
    configuration) and ends at that member's next record row. Members that kept their
    configuration are not plays (EXP3's importance weights hold only for draws it made)."""
    if not explore_rows or trans.empty:
        return trans.iloc[:0]
    times = records.groupby("member")["time"].apply(lambda t: np.sort(t.to_numpy()))
    ends = set()
    for row in explore_rows:
        later = times.get(row["member"], np.array([]))
        later = later[later > row["time"]]
        if len(later):
            ends.add((int(row["member"]), int(later[0])))
    hit = [(int(m), int(t)) in ends for m, t in zip(trans["member"], trans["time"], strict=True)]
    return trans[np.array(hit, dtype=bool)]


def probabilities(trans: pd.DataFrame, chosen: pd.DataFrame, param: ChoiceParam) -> tuple[np.ndarray, int]:
    """The EXP3 probabilities of ``param``'s choices after the rounds in ``trans`` (all
    transitions: columns time, y), learning from ``chosen`` (the plays among them); and the number
    of rounds with plays they rest on. A play's reward is its y min–max scaled among all of its
    round's transitions, so a choice is judged against the whole population at that time."""
    k = len(param.choices)
    log_w = np.zeros(k)
    rounds = 0
    if trans.empty:
        return np.full(k, 1.0 / k), 0
    all_times = trans["time"].to_numpy()
    all_y = trans["y"].to_numpy(dtype=np.float64)
    idx = np.array([param.index(v) for v in chosen[param.name]], dtype=np.int64)
    y = chosen["y"].to_numpy(dtype=np.float64)
    times = chosen["time"].to_numpy()
    for t in np.unique(all_times):
        p = _mix(log_w)
        log_w = (1.0 - FORGET) * log_w
        here = times == t
        if not here.any():
            continue
        ref = all_y[all_times == t]
        spread = ref.max() - ref.min()
        r = (y[here] - ref.min()) / spread if spread > 0 else np.full(int(here.sum()), 0.5)
        estimate = np.zeros(k)
        np.add.at(estimate, idx[here], r / p[idx[here]])
        log_w += ETA * estimate / len(r)
        rounds += 1
    return _mix(log_w), rounds


def _mix(log_w: np.ndarray) -> np.ndarray:
    w = np.exp(log_w - log_w.max())
    return (1.0 - GAMMA) * w / w.sum() + GAMMA / len(w)


def choose(
    trans: pd.DataFrame, chosen_rows: pd.DataFrame, params: list[ChoiceParam], rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One choice per categorical parameter, drawn from its EXP3 probabilities, and the diagnostics
    a record keeps (the probabilities per choice, the rounds with plays they rest on)."""
    chosen, diagnostics = {}, {}
    for param in params:
        p, rounds = probabilities(trans, chosen_rows, param)
        i = int(rng.choice(len(p), p=p))
        chosen[param.name] = param.choices[i]
        diagnostics[param.name] = {
            "probabilities": {str(c): round(float(q), 4) for c, q in zip(param.choices, p, strict=True)},
            "rounds": rounds,
        }
    return chosen, {"categorical_bandit": diagnostics}
