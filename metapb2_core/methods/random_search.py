"""Random search: P independent configurations drawn from the prior, never perturbed (quirk Q32)."""

from __future__ import annotations

from metapb2_core.methods.base import ExploreContext, Method, Suggestion, register_method


@register_method
class RandomSearch(Method):
    name = "random_search"
    perturbs = False

    def suggest(self, ctx: ExploreContext) -> Suggestion:  # never called: perturbs is False
        raise RuntimeError("random search does not perturb")
