"""Ray Tune's search-space domains as our parameters: ``tune.uniform``/``loguniform`` (floats),
``tune.randint``/``lograndint``/``qrandint`` (integers), ``tune.choice`` (categorical), each with
Tune's own bounds convention (``randint``'s and ``lograndint``'s upper bound is exclusive,
``qrandint``'s inclusive and its values multiples of ``q``). What has no faithful counterpart
(quantised floats, normal draws, ``sample_from``, grid search) is refused naming the parameter."""

from __future__ import annotations

import math
from typing import Any

from ray.tune.search import sample

from metapb2_core.errors import MetaPB2Error
from metapb2_core.space import AnyParam, ChoiceParam, IntParam, Param, SearchSpace, parse_declaration


def param_from_domain(name: str, domain: sample.Domain) -> AnyParam:
    """One Tune domain as our parameter, or one line naming what cannot be converted."""
    sampler = domain.get_sampler()
    if isinstance(domain, sample.Categorical):
        return ChoiceParam(name, list(domain.categories))
    quantized = isinstance(sampler, sample.Quantized)
    inner = sampler.get_sampler() if quantized else sampler
    log = isinstance(inner, sample.LogUniform)
    if not isinstance(inner, sample.Uniform | sample.LogUniform):
        raise MetaPB2Error(
            f"hyperparameter {name!r}: Tune's {type(inner).__name__} sampler has no counterpart here; "
            "use tune.uniform, loguniform, randint, lograndint, qrandint or choice"
        )
    if isinstance(domain, sample.Integer):
        if not quantized:  # randint, lograndint: upper bound exclusive
            return IntParam(name, domain.lower, domain.upper - 1, log=log)
        q = int(sampler.q)
        if log:
            raise MetaPB2Error(f"hyperparameter {name!r}: qlograndint has no counterpart; use lograndint")
        if domain.lower % q:
            raise MetaPB2Error(
                f"hyperparameter {name!r}: qrandint({domain.lower}, {domain.upper}, {q}) draws multiples "
                f"of {q}, so its lower bound must be one"
            )
        return IntParam(name, domain.lower, domain.lower + (domain.upper - domain.lower) // q * q, step=q)
    if isinstance(domain, sample.Float):
        if quantized:
            raise MetaPB2Error(
                f"hyperparameter {name!r}: quantised floats have no counterpart; declare an integer "
                "(tune.qrandint) or a choice (tune.choice)"
            )
        if not (math.isfinite(domain.lower) and math.isfinite(domain.upper)):
            raise MetaPB2Error(f"hyperparameter {name!r}: bounds must be finite, got {domain.domain_str}")
        return Param(name, domain.lower, domain.upper, log=log)
    raise MetaPB2Error(f"hyperparameter {name!r}: Tune's {type(domain).__name__} has no counterpart here")


def space_from_spec(spec: SearchSpace | dict[str, Any]) -> SearchSpace:
    """A space from our declarations (``SearchSpace.from_dict``) and Tune domains, mixed freely."""
    if isinstance(spec, SearchSpace):
        return spec
    if not isinstance(spec, dict):
        raise MetaPB2Error(f"a search space is a mapping of names to declarations, got {spec!r}")
    return SearchSpace(
        [
            param_from_domain(str(n), d) if isinstance(d, sample.Domain) else parse_declaration(str(n), d)
            for n, d in spec.items()
        ]
    )


def domain_of(p: AnyParam) -> sample.Domain:
    """Our parameter as the Tune domain that draws the same values (what PBT's mutations want)."""
    if p.kind == "choice":
        return sample.choice(list(p.choices))
    if p.kind == "int":
        if p.step > 1:  # qrandint draws multiples of q; our grid is low + k·step
            if p.low % p.step == 0:
                return sample.qrandint(p.low, p.high, p.step)
            return sample.choice(list(p.values))
        return (sample.lograndint if p.log else sample.randint)(p.low, p.high + 1)
    return (sample.loguniform if p.log else sample.uniform)(p.low, p.high)
