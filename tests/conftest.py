"""Fixtures shared by several test modules: one local Ray head for the session, and smoke pb2 runs
on three tasks with the meta-data built from them."""

import subprocess
import sys
from pathlib import Path

import pytest

META_SOURCES = ["cart_pole-earth", "cart_pole-venus", "acrobot-earth"]
META_TARGET = "cart_pole-saturn"


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


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    """Smoke pb2 records of ``META_SOURCES``, checked as `metapb2 run` checks them."""
    from metapb2_core.run import RunRequest, check_run, execute_run
    from metapb2_core.store import write_record

    runs = tmp_path_factory.mktemp("runs")
    for task in META_SOURCES:
        run = RunRequest(task, "pb2", 0, "smoke").resolve()
        record = execute_run(run)
        check_run(record, run)
        write_record(record, runs)
    return runs


@pytest.fixture(scope="session")
def meta_dir(tmp_path_factory, runs_dir):
    """The meta-data directory built from ``runs_dir`` ('metapb2 meta')."""
    from metapb2_core.meta.tables import build_meta_dir
    from metapb2_core.space import SEARCH_SPACE

    out = tmp_path_factory.mktemp("meta")
    written = build_meta_dir(runs_dir, out, SEARCH_SPACE)
    assert sorted(p.parent.name for p in written) == sorted(META_SOURCES)
    return out


SHORT_PBT = ("--task", "cart_pole-earth", "--method", "pbt", "--seed", "0", "--budget", "short")
SHORT_PBT_ID = "pbt-cart_pole-earth-short-s0"


@pytest.fixture(scope="session")
def short_pbt_record(tmp_path_factory):
    """One uninterrupted `metapb2 run` of PBT on cart_pole-earth at the short budget (about a minute):
    the learning test checks it learned, the resume tests that a killed run ends equal to it."""
    from metapb2_core.store import read_record

    out = tmp_path_factory.mktemp("short_pbt")
    exe = Path(sys.executable).with_name("metapb2")
    done = subprocess.run(
        [str(exe), "run", *SHORT_PBT, "--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return read_record(out, SHORT_PBT_ID)
