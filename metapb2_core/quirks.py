"""The single switch between the evidently intended behaviour and the original code's quirks.

methods.md §11 lists the quirks. The default is the intended behaviour; ``Quirks.faithful()``
reproduces the original where a quirk changes results materially, so the paper's numbers can be
compared like for like. Later modules read only the field that concerns them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Quirks:
    # protocol.md §1.2: gymnasium 0.28.1's Pendulum integrates with `g` and never reads the
    # `gravity` key CARL sets, so all five pendulum contexts had identical dynamics.
    pendulum_gravity_noop: bool = False
    # Q3/Q40: Ray's PB2 kernel has free (possibly negative) parameters and wrong analytic gradients.
    ray_kernel: bool = False
    # Q1: PB2*'s lengthscale starts at its upper bound 1.0, where the logistic transform freezes it.
    lengthscale_starts_at_bound: bool = False
    # Q31: every shipped config left log_scale_hyperparam empty, so PB2* modelled lr linearly.
    pb2_star_linear_lr: bool = False
    # Q39: transitions grouped by exact hyperparameter values can span an exploit that handed a
    # member back a configuration it had before; by default a transition never crosses an exploit.
    transitions_by_values: bool = False

    @classmethod
    def faithful(cls) -> Quirks:
        return cls(**{f.name: True for f in fields(cls)})

    @classmethod
    def from_flag(cls, faithful: bool) -> Quirks:
        return cls.faithful() if faithful else cls()
