"""Fixtures shared by several test modules: one local Ray head for the session, the README's main
command's demo study, smoke pb2 runs on three tasks with the meta-data built from them."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

# What metapb2's own processes set before JAX loads (xla_setup): a test module that imports jax
# first would leave jax's default, 1, to every subprocess, whose C++ cache-hit warnings then break
# the one-line error output the CLI tests read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory, ray_head):
    """The README's main command (`metapb2-study`, its defaults: the demo study) into a fresh home
    on the session's Ray head, then the same command again, which must find everything up to date.
    The platform tests read what it made; the UI test serves it with `dagster dev`."""
    home = tmp_path_factory.mktemp("demo_home")
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "METAPB2_RAY_ADDRESS": ray_head}
    exe = Path(sys.executable).with_name("metapb2-study")
    figures = {}
    start = time.monotonic()
    first = subprocess.run([str(exe)], cwd=home, env=env, capture_output=True, text=True, timeout=1500)
    figures["main command (s)"] = time.monotonic() - start
    assert first.returncode == 0, first.stderr[-3000:]
    start = time.monotonic()
    again = subprocess.run([str(exe)], cwd=home, env=env, capture_output=True, text=True, timeout=300)
    figures["no-op re-run (s)"] = time.monotonic() - start
    assert again.returncode == 0, again.stderr[-3000:]
    return {"home": home, "env": env, "first": first, "again": again, "figures": figures}


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


def pbt_args(budget: str) -> tuple[str, ...]:
    """`metapb2 run` arguments of PBT on cart_pole-earth, seed 0, at ``budget``."""
    return (*SHORT_PBT[:-1], budget)


def pbt_run_id(budget: str) -> str:
    return f"pbt-cart_pole-earth-{budget}-s0"


_PBT_RECORDS: dict = {}


@pytest.fixture(scope="session")
def pbt_record(tmp_path_factory):
    """``pbt_record(budget)``: one uninterrupted `metapb2 run` of PBT on cart_pole-earth at
    ``budget`` (made once per session): what a killed and resumed run must end equal to."""
    from metapb2_core.store import read_record

    def make(budget: str):
        if budget not in _PBT_RECORDS:
            out = tmp_path_factory.mktemp(f"{budget}_pbt")
            exe = Path(sys.executable).with_name("metapb2")
            done = subprocess.run(
                [str(exe), "run", *pbt_args(budget), "--quiet", "--out", str(out)],
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, done.stderr
            _PBT_RECORDS[budget] = read_record(out, pbt_run_id(budget))
        return _PBT_RECORDS[budget]

    return make


@pytest.fixture(scope="session")
def short_pbt_record(pbt_record):
    """PBT on cart_pole-earth at the short budget (about a minute): the learning test checks it
    learned, the slow resume tests that a killed run ends equal to it."""
    return pbt_record("short")


@pytest.fixture
def mount(tmp_path):
    """``mount(*args) -> Path``: a mount (``mount ARGS DIR``) on a fresh folder, unmounted at the
    end; skips where this process may not mount (not root, no CAP_SYS_ADMIN). As root, file modes
    stop no write: a read-only bind mount and a small tmpfs are the faithful read-only and full
    volumes (``os.access`` reports a read-only volume even to root)."""
    mounted = []

    def mount(*args: str) -> Path:
        target = tmp_path / f"mount{len(mounted)}"
        target.mkdir()
        done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount here: {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture
def full_volume(mount):
    """A volume of ``size`` (e.g. "1500k"), as a function: a tmpfs that fills up for real."""
    return lambda size: mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs")


@pytest.fixture
def read_only_dir(mount, tmp_path):
    """A read-only view (bind mount) of a fresh folder holding ``files`` (name → text)."""

    def make(files: dict[str, str] | None = None) -> Path:
        source = tmp_path / "ro-source"
        source.mkdir()
        for name, text in (files or {}).items():
            (source / name).write_text(text)
        target = mount("--bind", str(source))
        remount = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, text=True
        )
        if remount.returncode:
            pytest.skip(f"cannot remount read-only here: {remount.stderr.strip()}")
        return target

    return make
