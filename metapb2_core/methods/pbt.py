"""PBT as Ray Tune's PopulationBasedTraining with the study's settings (protocol.md §3.1).

Each hyperparameter of the cloned configuration is resampled from the prior with probability 0.25,
otherwise multiplied by 1.2 or 0.8 (chosen uniformly), then clipped into its bounds.
"""

from __future__ import annotations

from metapb2_core.methods.base import ExploreContext, Method, Suggestion, register_method

RESAMPLE_PROBABILITY = 0.25
PERTURBATION_FACTORS = (1.2, 0.8)


@register_method
class PBT(Method):
    name = "pbt"

    def suggest(self, ctx: ExploreContext) -> Suggestion:
        config, operations = {}, {}
        for p in self.space.params:
            if self.rng.random() < RESAMPLE_PROBABILITY:
                value, operations[p.name] = p.sample(self.rng), "resample"
            else:
                factor = PERTURBATION_FACTORS[int(self.rng.integers(len(PERTURBATION_FACTORS)))]
                value, operations[p.name] = ctx.clone_config[p.name] * factor, f"x{factor}"
            config[p.name] = p.clip(value)
        return Suggestion(config, {"operations": operations})
