"""MetaPB2 core: population-based hyperparameter tuning of JAX PPO, Dagster-free."""

from metapb2_core.xla_setup import configure_host_devices

configure_host_devices()

__version__ = "0.1.0"
