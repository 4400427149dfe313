"""Fixtures shared by the asset-platform tests: one local Ray head for the session."""

import pytest


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """Address of a local Ray head (2 CPUs) shared by the platform tests, stopped at the end."""
    from metapb2_assets import ray_cluster

    state = tmp_path_factory.mktemp("ray")
    address = ray_cluster.local_head(state, 2)
    yield address
    import ray

    ray.shutdown()
    ray_cluster.stop_local_head(state)
