"""Method registry keyed by name; importing this package registers every method."""

from metapb2_core.methods import (  # noqa: F401  (registration)
    meta_prior,
    multi_task,
    pb2,
    pbt,
    random_search,
    taf,
    warm,
)
from metapb2_core.methods.base import (
    METHODS,
    ExploreContext,
    Method,
    Suggestion,
    get_method,
    register_method,
)

__all__ = ["METHODS", "ExploreContext", "Method", "Suggestion", "get_method", "register_method"]
