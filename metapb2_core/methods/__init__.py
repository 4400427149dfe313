"""Method registry keyed by name; importing this package registers every method."""

from metapb2_core.methods import pb2, pbt, random_search  # noqa: F401  (registration)
from metapb2_core.methods.base import (
    METHODS,
    ExploreContext,
    Method,
    Suggestion,
    get_method,
    register_method,
)

__all__ = ["METHODS", "ExploreContext", "Method", "Suggestion", "get_method", "register_method"]
