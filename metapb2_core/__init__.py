"""MetaPB2 core: population-based hyperparameter tuning of JAX PPO, Dagster-free."""

from metapb2_core.xla_setup import configure_host_devices, limit_blas_threads

configure_host_devices()
limit_blas_threads()

__version__ = "0.1.0"
