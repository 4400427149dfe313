"""The PPO settings, and which of them a search space may tune, declared once: each tunable's
search-space name, the setting it replaces per member and its domain. The search space takes the
domains from here, the trainer the settings it traces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from metapb2_core.domains import Domain


class PPOSettings(NamedTuple):
    """RLlib 2.8.1 PPO settings in force in the study (its defaults, with the study's γ). A search
    space may tune any of them but ``kl_coeff_init`` (``TUNABLES``); a tuned value replaces the
    constant, per member."""

    lr: float = 5e-5
    lam: float = 1.0
    clip_param: float = 0.3
    gamma: float = 0.99
    vf_clip_param: float = 10.0
    vf_loss_coeff: float = 1.0
    entropy_coeff: float = 0.0
    kl_coeff_init: float = 0.2
    kl_target: float = 0.01


@dataclass(frozen=True)
class Tunable:
    setting: str  # the PPOSettings field a tuned value replaces
    domain: Domain  # where a value makes sense at all, whatever the bounds


_UNIT = Domain(0.0, 1.0, low_open=False, high_open=False)
# By search-space name (the paper's and RLlib's: ``lambda``, which the trainer calls ``lam``).
TUNABLES: dict[str, Tunable] = {
    "lr": Tunable("lr", Domain(0.0, 1.0)),
    "lambda": Tunable("lam", _UNIT),
    "clip_param": Tunable("clip_param", Domain(0.0)),
    "gamma": Tunable("gamma", _UNIT),
    "vf_clip_param": Tunable("vf_clip_param", Domain(0.0)),
    "vf_loss_coeff": Tunable("vf_loss_coeff", Domain(0.0, low_open=False)),
    "entropy_coeff": Tunable("entropy_coeff", Domain(0.0, low_open=False)),
    "kl_target": Tunable("kl_target", Domain(0.0)),
}
