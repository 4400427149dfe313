"""The DuckDB catalog (replace-by-key, concurrency, bad files), staleness and the run checks."""

import fcntl
import logging
import multiprocessing as mp
import os
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest

from metapb2_core.budgets import get_budget
from metapb2_core.checks import expected_perturbations, run_checks
from metapb2_core.space import SEARCH_SPACE
from metapb2_core.store import Catalog, Lineage, Replace, StoreError, lineage_rows
from metapb2_core.store import duckdb_file as catalog_module
from metapb2_core.store.staleness import partition_seed, settings_version, stale_partitions


def test_replace_deletes_the_key_then_inserts(tmp_path):
    cat = Catalog(tmp_path / "c.duckdb")
    cat.write([Replace("t", {"run_id": "a"}, pd.DataFrame({"run_id": ["a", "a"], "v": [1.0, 2.0]}))])
    cat.write([Replace("t", {"run_id": "b"}, pd.DataFrame({"run_id": ["b"], "v": [5.0]}))])
    cat.write([Replace("t", {"run_id": "a"}, pd.DataFrame({"run_id": ["a"], "v": [3.0], "extra": ["x"]}))])
    got = cat.query("SELECT run_id, v, extra FROM t ORDER BY run_id")
    assert got["run_id"].tolist() == ["a", "b"]
    assert got["v"].tolist() == [3.0, 5.0]
    assert got["extra"].tolist()[0] == "x" and pd.isna(got["extra"].tolist()[1])


def test_a_failing_change_rolls_back_the_whole_write(tmp_path):
    cat = Catalog(tmp_path / "c.duckdb")
    cat.write([Replace("t", {"k": 1}, pd.DataFrame({"k": [1], "v": [1.0]}))])
    bad = pd.DataFrame({"k": [1], "v": ["not a number"]})
    with pytest.raises(duckdb.ConversionException):
        cat.write([Replace("t", {"k": 1}, pd.DataFrame({"k": [1], "v": [9.0]})), Replace("t", {"k": 2}, bad)])
    assert cat.query("SELECT v FROM t")["v"].tolist() == [1.0]


def _writer(path: str, worker: int, n: int) -> None:
    cat = Catalog(path)
    for i in range(n):
        key = f"w{worker}-{i % 5}"  # each key written several times: replaced, never duplicated
        cat.write([Replace("t", {"key": key}, pd.DataFrame({"key": [key] * 3, "i": [i] * 3}))])


def test_concurrent_writers_never_fail_or_duplicate(tmp_path):
    path = str(tmp_path / "c.duckdb")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 20)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    counts = Catalog(path).query("SELECT key, count(*) AS n FROM t GROUP BY key")
    assert len(counts) == 20 and set(counts["n"]) == {3}


def test_corrupt_file_is_named_and_left_untouched(tmp_path):
    path = tmp_path / "metapb2.duckdb"
    junk = b"not a database " * 400
    path.write_bytes(junk)
    with pytest.raises(StoreError, match="not a valid DuckDB database.*left untouched"):
        Catalog(path).check()
    assert path.read_bytes() == junk


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_unwritable_folder_is_named(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(StoreError, match="ro"):
        Catalog(ro / "c.duckdb").check()


def test_missing_parent_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the DuckDB catalog"):
        Catalog(blocker / "sub" / "c.duckdb").check()


def test_a_full_volume_fails_a_write_in_one_line_and_keeps_the_last_commit(full_volume):
    cat = Catalog(full_volume("1m") / "c.duckdb")
    cat.write([Replace("t", {"k": 1}, pd.DataFrame({"k": [1] * 10, "v": np.arange(10.0)}))])
    big = pd.DataFrame({"k": [2] * 300_000, "v": np.random.default_rng(0).random(300_000)})
    with pytest.raises(StoreError) as e:
        cat.write([Replace("t", {"k": 2}, big)])
    assert str(e.value).startswith(f"cannot write the DuckDB catalog {cat.path}: IO Error: ")
    assert str(e.value).endswith("No space left on device") and "\n" not in str(e.value)
    assert cat.query("SELECT k, count(*) AS n FROM t GROUP BY k").to_dict("list") == {"k": [1], "n": [10]}


HOLD_OPEN = (
    "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('open', flush=True); time.sleep(2)"
)


def test_a_catalog_held_open_elsewhere_is_waited_for_saying_who_holds_it(tmp_path, caplog):
    path = tmp_path / "c.duckdb"
    Catalog(path).check()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with caplog.at_level(logging.WARNING, catalog_module.__name__), pytest.raises(StoreError) as e:
            Catalog(path, timeout=0.5).write([])
        who = f"process {holder.pid} ("
        assert str(e.value).startswith(f"gave up after 0.5s waiting for the DuckDB catalog {path}: {who}")
        assert "\n" not in str(e.value)
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1 and said[0].startswith(
            f"waiting up to 0.5s for the DuckDB catalog {path}: {who}"
        )
        # a longer wait outlasts the holder, and the write goes through
        Catalog(path, timeout=60).write([Replace("t", {"k": 1}, pd.DataFrame({"k": [1]}))])
    finally:
        holder.kill()
        holder.wait()
    assert Catalog(path).count("t") == 1


def test_a_long_wait_for_the_platforms_write_lock_says_who_holds_it(tmp_path, caplog, monkeypatch):
    cat = Catalog(tmp_path / "c.duckdb", timeout=0.5)
    cat.check()
    monkeypatch.setattr(catalog_module, "SAY_WAIT_AFTER_S", 0.1)
    fd = os.open(cat.lock_path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another writer (here: another open file of this process)
    try:
        with caplog.at_level(logging.WARNING, catalog_module.__name__), pytest.raises(StoreError) as e:
            cat.write([])
    finally:
        os.close(fd)
    who = f"process {os.getpid()} (another writer of the platform) holds it"
    assert (
        str(e.value)
        == f"gave up after 0.5s waiting for the lock {cat.lock_path} of the DuckDB catalog: {who}"
    )
    assert [r.getMessage() for r in caplog.records] == [
        f"waiting up to 0.5s for the lock {cat.lock_path} of the DuckDB catalog: {who}"
    ]


def test_stale_partitions_by_code_version_and_newer_inputs(tmp_path):
    cat = Catalog(tmp_path / "c.duckdb")
    lin = lambda key, part, ver: lineage_rows(Lineage(key, part, "run", ver), [])  # noqa: E731
    cat.write([lin("eval", "0|a", "v1"), lin("eval", "0|b", "v2")])
    assert stale_partitions(cat, "eval", "v2", []) == ["0|a"]
    cat.write([lin("meta", "0|c", "m1")])  # an input re-made after both evaluations
    assert stale_partitions(cat, "eval", "v2", ["meta"]) == ["0|a", "0|b"]
    cat.write([lin("eval", "0|a", "v2"), lin("eval", "0|b", "v2")])
    assert stale_partitions(cat, "eval", "v2", ["meta"]) == []


def test_a_new_seed_makes_no_partition_of_an_earlier_seed_stale(tmp_path):
    """Seeds are replicates: seed 1's inputs made after seed 0's evaluations leave those current,
    while an unpartitioned input, or any seed's, is newer for an unpartitioned asset (the ranks)."""
    cat = Catalog(tmp_path / "c.duckdb")
    lin = lambda key, part: lineage_rows(Lineage(key, part, "run", "v"), [])  # noqa: E731
    cat.write([lin("meta", "0|a"), lin("meta", "0|b"), lin("portfolio", "0")])
    cat.write([lin("eval", "0|a"), lin("eval", "0|b"), lin("ranks", "")])
    cat.write([lin("meta", "1|a"), lin("portfolio", "1")])  # seed 1 added
    assert stale_partitions(cat, "eval", "v", ["meta", "portfolio"]) == []
    assert stale_partitions(cat, "portfolio", "v", ["meta"]) == []
    assert stale_partitions(cat, "ranks", "v", ["meta"]) == [""]
    cat.write([lin("eval", "1|a")])
    cat.write([lin("portfolio", "0")])  # seed 0's portfolio re-made: only seed 0's runs are behind
    assert stale_partitions(cat, "eval", "v", ["meta", "portfolio"]) == ["0|a", "0|b"]
    cat.write([lin("meta", "0|c")])
    assert stale_partitions(cat, "portfolio", "v", ["meta"]) == ["0"]  # seed 1's made after 1|a
    cat.write([lin("shared", "")])  # an unpartitioned input is every seed's
    assert stale_partitions(cat, "eval", "v", ["shared"]) == ["0|a", "0|b", "1|a"]
    assert partition_seed("3|cart_pole-earth") == "3" and partition_seed("3") == "3"
    assert partition_seed("") is None


def test_a_partition_made_at_another_budget_is_stale_for_a_study_but_not_by_code_alone(tmp_path):
    cat = Catalog(tmp_path / "c.duckdb")
    made = {"0|a": settings_version("v2", "demo", False), "0|b": settings_version("v2", "short", True)}
    cat.write([lineage_rows(Lineage("eval", p, "run", v), []) for p, v in made.items()])
    want = settings_version("v2", "demo", False)
    assert want == "v2@demo" and made["0|b"] == "v2@short-faithful"
    assert stale_partitions(cat, "eval", want, []) == ["0|b"]  # a study at demo, fixed
    assert stale_partitions(cat, "eval", want, [], code_only=True) == []  # no study: code counts
    assert stale_partitions(cat, "eval", settings_version("v3", "demo", False), [], code_only=True) == [
        "0|a",
        "0|b",
    ]


def _record(method="pbt", members=4, intervals=3):
    budget = get_budget("smoke")
    rows = []
    for m in range(members):
        for it in range(1, intervals * budget.iterations_per_interval + 1):
            rows.append(
                {
                    "member": m,
                    "training_iteration": it,
                    "timesteps": it * 100,
                    "eval_return": float(it),
                    "eval_is_fresh": it % budget.iterations_per_interval == 0,
                    "train_return": np.nan,
                    "lr": 1e-4,
                    "lambda": 0.95,
                    "clip_param": 0.2,
                }
            )
    pert = pd.DataFrame({"member": range(expected_perturbations(budget, method))})
    meta = {
        "method": method,
        "task": "cart_pole-earth",
        "faithful": False,
        "meta_tasks": {},
        "portfolio": None,
    }
    return pd.DataFrame(rows), pert, meta, budget


def test_checks_pass_on_a_sound_record():
    points, pert, meta, budget = _record()
    assert all(c.passed for c in run_checks(points, pert, meta, budget, SEARCH_SPACE))


@pytest.mark.parametrize(
    "spoil, failing",
    [
        (
            lambda p, pe, m: p.__setitem__("eval_return", np.where(p["eval_is_fresh"], np.inf, np.nan)),
            "finite_returns",
        ),
        (lambda p, pe, m: p.__setitem__("timesteps", 100), "monotone_timesteps"),
        (lambda p, pe, m: p.__setitem__("lr", 0.5), "hyperparameters_in_bounds"),
        (lambda p, pe, m: m.__setitem__("meta_tasks", {"cart_pole-earth": ["r"]}), "no_target_leakage"),
        (
            lambda p, pe, m: m.__setitem__("portfolio", [{"source_task": "cart_pole-venus"}]),
            "no_target_leakage",
        ),
    ],
)
def test_each_check_catches_its_fault(spoil, failing):
    points, pert, meta, budget = _record()
    spoil(points, pert, meta)
    failed = [c.name for c in run_checks(points, pert, meta, budget, SEARCH_SPACE) if not c.passed]
    assert failed == [failing]


def test_population_check_counts_members_and_perturbations():
    points, pert, meta, budget = _record()
    failed = lambda p, pe: [c.name for c in run_checks(p, pe, meta, budget, SEARCH_SPACE) if not c.passed]  # noqa: E731
    assert failed(points[points["member"] < 3], pert) == ["population_as_configured"]
    assert failed(points, pert.iloc[:-1]) == ["population_as_configured"]
    assert expected_perturbations(budget, "pbt") == 2 and expected_perturbations(budget, "random_search") == 0


def test_a_step_writes_its_table_keyed_as_the_schema_says_or_is_refused(tmp_path):
    from metapb2_core.store import step_rows

    cat = Catalog(tmp_path / "c.duckdb")
    rows = pd.DataFrame({"family": ["classic"], "seed": [0], "target_task": ["a"], "position": [0]})
    cat.write([step_rows("portfolios", rows, family="classic", seed=0)])
    cat.write([step_rows("portfolios", rows.assign(position=1), family="classic", seed=0)])
    assert cat.rows("portfolios")["position"].tolist() == [1]  # replaced, not appended
    with pytest.raises(ValueError, match=r"keyed by \('family', 'seed'\), not \('seed',\)"):
        step_rows("portfolios", rows, seed=0)
    with pytest.raises(ValueError, match="'runs' is not a step's table"):
        step_rows("runs", rows, run_id="x")


def test_a_record_that_reproduces_the_one_on_disk_is_recognised_and_any_other_value_is_not(tmp_path):
    from metapb2_core.ask_tell import AskTellPopulation
    from metapb2_core.store import write_record
    from metapb2_core.store.reproduced import reproduced

    def record(bump: float = 0.0, wall: float = 1.0):
        pop = AskTellPopulation.create("pb2", {"lr": (1e-4, 1e-1, "log")}, size=4, seed=0)
        for t in (1, 2, 3):
            pop.tell_all(t, [m * t + bump * (t == 3) for m in range(4)])
            if t < 3:
                pop.perturb()
        r = pop.to_record("toy", 0)
        r.points["wall_seconds"] = wall
        return r

    runs = tmp_path / "runs"
    assert reproduced(runs, record()) is None  # nothing on disk yet
    write_record(record(), runs)
    kept = reproduced(runs, record(wall=9.0))  # timings differ, values do not
    assert kept is not None and kept.points["wall_seconds"].iloc[0] == 1.0
    assert reproduced(runs, record(bump=1e-9)) is None  # one value differs
    other_role = record()
    other_role.meta["role"] = "meta"
    assert reproduced(runs, other_role) is None
