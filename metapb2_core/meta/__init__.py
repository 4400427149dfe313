"""Meta-data of earlier runs and the meta-models built on it (methods.md §5)."""
