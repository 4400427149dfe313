"""PBT as Ray Tune's PopulationBasedTraining with the study's settings (protocol.md §3.1).

Each hyperparameter of the cloned configuration is resampled from the prior with probability 0.25,
otherwise multiplied by 1.2 or 0.8 (chosen uniformly), then clipped into its bounds; an integer is
then rounded to its grid and, when rounding undoes the factor (small values), moved one grid step
the factor's way. A categorical one is otherwise moved to the neighbouring choice on one side or
the other (clipped at the ends), as Tune's PBT does with a list of values (``_explore``).
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
            elif p.kind == "choice":
                shift = (-1, 1)[int(self.rng.integers(2))]
                i = min(max(p.index(ctx.clone_config[p.name]) + shift, 0), len(p.choices) - 1)
                value, operations[p.name] = p.choices[i], f"shift{shift:+d}"
            else:
                factor = PERTURBATION_FACTORS[int(self.rng.integers(len(PERTURBATION_FACTORS)))]
                value, operations[p.name] = ctx.clone_config[p.name] * factor, f"x{factor}"
                if p.kind == "int":
                    value = _int_step(p, ctx.clone_config[p.name], factor)
            config[p.name] = p.clip(value)
        return Suggestion(config, {"operations": operations})


def _int_step(p, value: int, factor: float) -> int:
    """``value`` × ``factor`` on ``p``'s grid, at least one step away when the bounds allow."""
    moved = p.clip(value * factor)
    if moved == value:
        moved = p.clip(value + (p.step if factor > 1 else -p.step))
    return moved
