"""Definitions present and named; bad settings fail with the setting's name and lose nothing."""

from pathlib import Path

import dagster as dg
import pytest

from metapb2_assets.definitions import build_definitions
from metapb2_assets.family import partition_key
from metapb2_assets.resources import RayResource, StudyStore
from metapb2_core.checks import CHECKS
from metapb2_core.envs import ENV_FAMILIES
from metapb2_core.methods import METHODS
from metapb2_core.study import family_tasks

CLASSIC_TASKS = family_tasks("classic")
PER_FAMILY = ["portfolio_candidates", "performance_matrix", "portfolio", "meta_runs", "method_ranks"]


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    """The definitions of a study root without a study.yaml: every family's whole task space."""
    return build_definitions(store=StudyStore(root=str(tmp_path_factory.mktemp("open"))))


def test_the_embedded_default_is_the_demo_study():
    from metapb2_assets.definitions import defs
    from metapb2_core.study_spec import DEMO

    default = defs()
    graph = default.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {f"classic/{n}" for n in PER_FAMILY} | {f"classic/evaluation_{m}" for m in METHODS}
    parts = graph.get(dg.AssetKey(["classic", "evaluation_pbt"])).partitions_def
    assert sorted(parts.get_partition_keys()) == sorted(f"0|{t}" for t in DEMO.tasks)
    sensor = default.get_sensor_def("refresh_method_ranks")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING  # ranks fresh out of the box
    assert sensor.minimum_interval_seconds == 10


def test_definitions_have_every_asset_check_partition_schedule_and_sensor(defs):
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for family in ENV_FAMILIES:
        want = {f"{family}/{n}" for n in PER_FAMILY} | {f"{family}/evaluation_{m}" for m in METHODS}
        assert want <= keys
        assert defs.get_schedule_def(f"{family}_rerun_stale_evaluations").cron_schedule == "0 3 * * *"
        for name in ["meta_runs", *(f"evaluation_{m}" for m in METHODS)]:
            checks = {
                c.name for c in graph.asset_check_keys if c.asset_key.to_user_string() == f"{family}/{name}"
            }
            assert checks == set(CHECKS), name
    assert len(keys) == len(ENV_FAMILIES) * (len(PER_FAMILY) + len(METHODS))
    parts = graph.get(dg.AssetKey(["classic", "evaluation_pbt"])).partitions_def
    assert isinstance(parts, dg.MultiPartitionsDefinition)
    assert sorted(d.name for d in parts.partitions_defs) == ["seed", "task"]
    assert len(parts.get_partition_keys()) == 20 * 10
    seeds = graph.get(dg.AssetKey(["classic", "portfolio"])).partitions_def
    assert isinstance(seeds, dg.StaticPartitionsDefinition) and seeds.get_partition_keys() == [
        str(s) for s in range(10)
    ]
    assert graph.get(dg.AssetKey(["classic", "method_ranks"])).automation_condition is not None
    assert defs.get_sensor_def("refresh_method_ranks") is not None


def test_evaluation_dependencies_follow_what_each_method_requires(defs):
    graph = defs.resolve_asset_graph()
    parents = lambda name: {k.path[-1] for k in graph.get(dg.AssetKey(["classic", name])).parent_keys}  # noqa: E731
    assert parents("evaluation_pbt") == set()
    assert parents("evaluation_metaprior") == {"meta_runs"}
    assert parents("evaluation_pb2_star_warm") == {"portfolio"}
    assert parents("performance_matrix") == {"portfolio_candidates"}
    assert {f"evaluation_{m}" for m in METHODS} == parents("method_ranks")


def test_a_partition_reads_every_task_of_its_own_seed_and_its_seed_s_portfolio(defs):
    """Seeds are replicates: seed 1's matrix column and evaluations read seed 1's candidates,
    meta runs and portfolio, never another seed's (so adding a seed changes no earlier seed)."""
    graph = defs.resolve_asset_graph()
    node = lambda name: graph.get(dg.AssetKey(["classic", name]))  # noqa: E731
    child = partition_key("cart_pole-earth", 1)
    for name, parent, want in [
        ("evaluation_metaprior", "meta_runs", {str(partition_key(t, 1)) for t in CLASSIC_TASKS}),
        ("performance_matrix", "portfolio_candidates", {str(partition_key(t, 1)) for t in CLASSIC_TASKS}),
        ("evaluation_pb2_star_warm", "portfolio", {"1"}),
    ]:
        up = graph.get_parent_partition_keys_for_child(
            child, dg.AssetKey(["classic", parent]), node(name).key
        )
        assert set(up.partitions_subset.get_partition_keys()) == want, name
    up = graph.get_parent_partition_keys_for_child("1", node("performance_matrix").key, node("portfolio").key)
    assert set(up.partitions_subset.get_partition_keys()) == {str(partition_key(t, 1)) for t in CLASSIC_TASKS}


def _materialise(tmp_path, ray: RayResource, store: StudyStore):
    d = build_definitions(ray, store)
    return dg.materialize(
        list(d.assets),
        instance=dg.DagsterInstance.ephemeral(tempdir=str(tmp_path)),
        resources=d.resources,
        partition_key=partition_key("cart_pole-earth", 0),
        selection=[dg.AssetKey(["classic", "evaluation_pbt"])],
    )


def _cause(excinfo) -> str:
    err, text = excinfo.value, []
    while err is not None:
        text.append(str(err))
        err = err.__cause__
    return " | ".join(text)


def test_wrong_ray_address_names_the_setting(tmp_path):
    with pytest.raises(dg.DagsterResourceFunctionError) as e:
        _materialise(tmp_path, RayResource(address="127.0.0.1:9"), StudyStore(root=str(tmp_path)))
    assert "resource 'ray', setting 'address' = '127.0.0.1:9': no Ray cluster answers there" in _cause(e)
    with pytest.raises(dg.DagsterResourceFunctionError) as e:
        _materialise(tmp_path, RayResource(address="not-an-address"), StudyStore(root=str(tmp_path)))
    assert "is not an address of the form [ray://]HOST:PORT" in _cause(e)


def _silent_listener():
    """A port where something listens but never answers (a wrong port: not a Ray GCS)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


@pytest.mark.parametrize("where", ["nothing", "not-ray"])
def test_the_main_command_refuses_a_ray_address_with_no_cluster_in_one_line_before_any_run(tmp_path, where):
    import os
    import subprocess
    import sys

    server = _silent_listener() if where == "not-ray" else None
    address = f"127.0.0.1:{server.getsockname()[1]}" if server else "127.0.0.1:1"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "METAPB2_RAY_ADDRESS": address}
    env.pop("METAPB2_STUDY_ROOT", None)
    try:
        cmd = [sys.executable, "-m", "metapb2_assets.study"]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    finally:
        if server:
            server.close()
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    said = f"metapb2-study: error: METAPB2_RAY_ADDRESS (resource 'ray', setting 'address') = '{address}': "
    assert lines[0].startswith(said)
    why = {
        "nothing": "no Ray cluster answers there",
        "not-ray": "something listens there but it is not a Ray",
    }
    assert why[where] in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing declared, no instance, no catalog


def test_a_cluster_gone_before_the_run_starts_fails_it_naming_the_address(tmp_path):
    from metapb2_assets import ray_cluster
    from metapb2_assets.study_runner import StudyRunner
    from metapb2_core.errors import MetaPB2Error
    from metapb2_core.study_spec import DEMO

    state, root = tmp_path / "ray", tmp_path / "root"
    root.mkdir()
    (root / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    address = ray_cluster.local_head(state, 1)
    spec = DEMO.with_changes(tasks=["cart_pole-earth"], methods=["pbt"])  # one run
    runner = StudyRunner(spec, RayResource(address=address), StudyStore(root=str(root)))
    try:
        runner.resources["ray"].check_address()  # a live Ray GCS passes the check
    finally:
        ray_cluster.release(state)  # the cluster goes away ...
    assert ray_cluster.running_head(state) is None
    with pytest.raises(MetaPB2Error) as e:  # ... before the run starts
        runner.run(str(root), workers=1)
    said = str(e.value)
    assert said.startswith("1 run(s) failed: resource 'ray', setting 'address' = ") and "\n" not in said
    assert (
        f"'{address}': no Ray cluster answers there" in said
        and "classic_evaluation_pbt [0|cart_pole-earth]" in said
    )
    assert not list((root / "runs").glob("*.json"))  # nothing published


def _main_command(home, env: dict, *args: str):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DAGSTER_HOME": str(home), **env}
    env.pop("METAPB2_STUDY_ROOT", None)
    cmd = [sys.executable, "-m", "metapb2_assets.study", *args]
    return subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=900)


def test_a_read_only_study_root_is_one_line_before_anything_is_declared_or_run(read_only_dir, ray_head):
    home = read_only_dir({"dagster.yaml": "telemetry:\n  enabled: false\n"})
    done = _main_command(home, {"METAPB2_RAY_ADDRESS": ray_head})
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"metapb2-study: error: DAGSTER_HOME {home} is not writable"
    ], done.stderr[-3000:]
    sub = home / "sub"  # a home the command would have to create there
    done = _main_command(home, {"METAPB2_RAY_ADDRESS": ray_head, "DAGSTER_HOME": str(sub)})
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"metapb2-study: error: cannot create DAGSTER_HOME {sub}: Read-only file system"
    ], done.stderr[-3000:]
    assert sorted(p.name for p in home.iterdir()) == ["dagster.yaml"]


def test_a_full_study_root_fails_the_run_in_one_line_and_publishes_nothing(full_volume, ray_head):
    import shutil

    from metapb2_core.store import Catalog

    home = full_volume("1500k")  # the instance and catalog fit; a demo-sized checkpoint does not
    shutil.copy(Path(__file__).parents[1] / "dagster_home" / "dagster.yaml", home)
    args = ["--tasks", "cart_pole-earth", "--methods", "pbt", "--workers", "1"]
    done = _main_command(home, {"METAPB2_RAY_ADDRESS": ray_head}, *args)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1, done.stderr[-3000:]
    ckpt = home / "runs" / "pbt-cart_pole-earth-demo-s0.checkpoint"
    assert last.startswith(
        f"metapb2-study: 1 run(s) failed: interval 1 of 5 done, but cannot save the checkpoint {ckpt}: "
        "No space left on device; there is no earlier one"
    ), last
    assert "classic_evaluation_pbt [0|cart_pole-earth]" in last
    assert list((home / "runs").iterdir()) == []  # no record, no half-written file
    assert Catalog(home / "metapb2.duckdb").count("runs") == 0  # nothing published


def test_unwritable_duckdb_path_names_the_setting(tmp_path, ray_head):
    (tmp_path / "a_file").write_text("x")
    bad = tmp_path / "a_file" / "metapb2.duckdb"
    with pytest.raises(dg.DagsterResourceFunctionError) as e:
        _materialise(
            tmp_path, RayResource(address=ray_head), StudyStore(root=str(tmp_path), database=str(bad))
        )
    assert f"resource 'store', setting 'database' = '{bad}': cannot create the DuckDB catalog" in _cause(e)


def test_corrupt_duckdb_file_names_the_setting_and_is_left_untouched(tmp_path, ray_head):
    bad = tmp_path / "metapb2.duckdb"
    junk = b"this is not a duckdb file " * 300
    bad.write_bytes(junk)
    with pytest.raises(dg.DagsterResourceFunctionError) as e:
        _materialise(tmp_path, RayResource(address=ray_head), StudyStore(root=str(tmp_path)))
    assert "setting 'database'" in _cause(e) and "not a valid DuckDB database" in _cause(e)
    assert bad.read_bytes() == junk
    assert not list((tmp_path / "runs").glob("*"))  # failed before any compute: nothing to lose


@pytest.mark.parametrize("threads", [1, 2])
def test_a_ray_worker_gets_one_single_threaded_xla_device_per_cpu_it_holds(threads):
    import os
    import subprocess
    import sys

    from metapb2_assets.ray_cluster import worker_env

    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "METAPB2_HOST_DEVICES")}
    env.update(worker_env(threads))
    code = "import os, metapb2_core, jax; print(len(jax.devices())); print(os.environ['XLA_FLAGS'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    devices, flags = out.stdout.strip().splitlines()
    assert int(devices) == threads
    assert "--xla_cpu_multi_thread_eigen=false" in flags.split()
    assert all(f.startswith("--") for f in flags.split())  # XLA silently ignores anything else
