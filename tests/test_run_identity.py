"""A run id names exactly one request: requests that differ in bounds, meta-data, portfolio, quirk
switch, budget, seed or tag never share one; the same request again has the same id and replaces
its record. And a record's files appear together or not at all."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metapb2_core.meta.tables import write_meta_table
from metapb2_core.run import RunRequest
from metapb2_core.space import SEARCH_SPACE
from metapb2_core.store import RecordError, RunRecord, read_record, record_ids, write_record
from metapb2_core.store.files import sweep_temp_files, temp_path

TASK = "cart_pole-earth"
BASE = f"pbt-{TASK}-smoke-s0"


def rid(**kw) -> str:
    args = {"task": TASK, "method": "pbt", "seed": 0, **kw}
    return RunRequest(**args).resolve().run_id


def meta_tables(folder: Path, shift: float) -> Path:
    """A meta-data directory with one synthetic pb2 run on acrobot-earth."""
    rng = np.random.default_rng(0)
    n = 12
    table = pd.DataFrame(
        {
            "run_id": "pb2-acrobot-earth-smoke-s0",
            "task": "acrobot-earth",
            "method": "pb2",
            "seed": 0,
            "budget": "smoke",
            "member": np.arange(n) % 4,
            "time": 800 * (1 + np.arange(n) // 4),
            "r_before": rng.normal(size=n),
            **{p.name: [p.sample(rng) for _ in range(n)] for p in SEARCH_SPACE.params},
            "y": rng.normal(size=n) + shift,
        }
    )
    write_meta_table(folder, table)
    return folder


def portfolio(folder: Path, scale: float) -> Path:
    entries = [{"lr": 1e-4 * scale, "lambda": 0.95, "clip_param": 0.2, "source_task": "acrobot-earth"}] * 5
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TASK}_portfolio.json").write_text(json.dumps(entries))
    return folder


def test_the_default_request_has_the_plain_id():
    assert rid() == BASE
    assert rid(bounds={"lr": (1e-5, 1e-3)}) == BASE  # the default bounds, given explicitly


@pytest.mark.parametrize(
    "change",
    [
        {"bounds": {"lr": (1e-4, 2e-4)}},
        {"bounds": {"clip_param": (0.1, 0.3)}},
        {"faithful": True},
        {"budget": "short"},
        {"seed": 1},
        {"tag": "meta"},
    ],
    ids=["lr-bounds", "clip-bounds", "faithful", "budget", "seed", "tag"],
)
def test_each_difference_from_the_default_gives_another_id(change):
    assert rid(**change) != BASE


def test_ids_of_different_bounds_differ_from_each_other_and_are_stable():
    a, b = rid(bounds={"lr": (1e-4, 2e-4)}), rid(bounds={"lr": (1e-4, 3e-4)})
    assert len({a, b, BASE}) == 3
    assert a == rid(bounds={"lr": (1e-4, 2e-4)})  # the same request, the same id
    assert a.startswith(BASE + "-") and len(a) == len(BASE) + 9  # an 8-digit digest of what differs


def test_meta_data_and_portfolio_enter_the_id_by_content(tmp_path):
    one, two = meta_tables(tmp_path / "m1", 0.0), meta_tables(tmp_path / "m2", 1.0)
    copy = meta_tables(tmp_path / "m3", 0.0)  # another folder with the same data
    ids = {name: rid(method="taf", meta=str(m)) for name, m in [("one", one), ("two", two), ("copy", copy)]}
    assert ids["one"] != ids["two"]
    assert ids["one"] == ids["copy"]  # what names the run is the meta-data read, not where it lay
    assert ids["one"].startswith(f"taf-{TASK}-smoke-s0-")
    p1, p2 = portfolio(tmp_path / "p1", 1.0), portfolio(tmp_path / "p2", 2.0)
    assert rid(method="pb2_star_warm", portfolio=str(p1)) != rid(method="pb2_star_warm", portfolio=str(p2))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("metapb2")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_a_run_with_other_bounds_never_overwrites_the_default_one(tmp_path):
    out = tmp_path / "runs"
    base = ["run", "--task", TASK, "--method", "pbt", "--quiet", "--out", str(out)]
    for extra in ([], ["--bounds", "lr=1e-4:2e-4"]):
        done = cli(*base, *extra, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    ids = record_ids(out)
    narrow = rid(bounds={"lr": (1e-4, 2e-4)})
    assert ids == sorted([BASE, narrow])  # two requests, two records
    assert read_record(out, narrow).points["lr"].between(1e-4, 2e-4).all()
    assert not read_record(out, BASE).points["lr"].between(1e-4, 2e-4).all()
    assert read_record(out, narrow).meta["variant"] == {"bounds": {"lr": [1e-4, 2e-4]}}


# ---- atomic records ---------------------------------------------------------------------------------


def small_record(note: str, best: float = 1.0) -> RunRecord:
    points = pd.DataFrame(
        {
            "run_id": BASE,
            "member": [0, 1],
            "timesteps": [10, 10],
            "eval_return": [best, 0.0],
            "eval_is_fresh": True,
        }
    )
    perturbations = pd.DataFrame({"run_id": [BASE], "member": [1]})
    ident = {"task": TASK, "method": "pbt", "seed": 0, "budget": "smoke", "budget_sizes": {}}
    return RunRecord(BASE, points, perturbations, {"run_id": BASE, **ident, "note": note, "best": best})


KILLED_WRITER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from metapb2_core.store import records
from test_run_identity import small_record
real = records.os.replace
def replace_then_die(src, dst):
    real(src, dst)
    if str(dst).endswith({after!r}):
        os.kill(os.getpid(), signal.SIGKILL)
records.os.replace = replace_then_die
records.write_record(small_record("new"), {out!r})
"""


@pytest.mark.parametrize("after", [".points.parquet", ".perturbations.parquet"])
@pytest.mark.parametrize("had_record", [False, True], ids=["first-write", "replacing"])
def test_a_writer_killed_between_files_leaves_no_record_that_reads_as_complete(tmp_path, after, had_record):
    out = tmp_path / "runs"
    if had_record:
        write_record(small_record("old"), out)
    script = KILLED_WRITER.format(tests=os.path.dirname(__file__), after=after, out=str(out))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr  # it died by SIGKILL, mid-write
    assert record_ids(out) == []  # neither the old record nor a mix of old and new files
    with pytest.raises(RecordError, match="no complete record"):
        read_record(out, BASE)
    leftovers = [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert leftovers  # the dead writer's temporary manifest (and parquet file) are still there

    write_record(small_record("next"), out)  # the next write sweeps them and completes
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert read_record(out, BASE).meta["note"] == "next"


def test_a_damaged_or_swapped_file_does_not_read_as_the_record(tmp_path):
    write_record(small_record("a"), tmp_path)
    points = tmp_path / f"{BASE}.points.parquet"
    points.write_bytes(points.read_bytes()[:-20])
    with pytest.raises(RecordError, match=r"points.parquet does not match its manifest"):
        read_record(tmp_path, BASE)


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda m: m.pop("budget"), "lacks 'budget'"),
        (lambda m: m.pop("task"), "lacks 'task'"),
        (
            lambda m: m.update(record_files=[]),
            "record_files has no size and digest of its points file (got [])",
        ),
        (lambda m: m["record_files"].pop("perturbations"), "no size and digest of its perturbations file"),
        (lambda m: m.update(seed="0"), "'seed' is '0', not an integer"),
    ],
    ids=["no-budget", "no-task", "record-files-a-list", "no-perturbations-entry", "seed-a-string"],
)
def test_a_manifest_without_what_readers_need_is_refused_in_one_line_naming_it(tmp_path, spoil, message):
    write_record(small_record("a"), tmp_path)
    path = tmp_path / f"{BASE}.json"
    manifest = json.loads(path.read_text())
    spoil(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(RecordError) as e:
        read_record(tmp_path, BASE)
    assert str(e.value).startswith(f"run record manifest {path}") and message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_the_sweep_keeps_temp_files_of_live_writers(tmp_path):
    live = temp_path(tmp_path / "x.json")  # named by this (live) process
    live.write_text("{}")
    dead = tmp_path / f".x.json.{os.uname().nodename}.999999999.tmp"
    dead.write_text("{}")
    assert sweep_temp_files(tmp_path) == [dead]
    assert live.exists() and not dead.exists()


def test_the_manifest_is_strict_json(tmp_path):
    write_record(small_record("nan", best=math.nan), tmp_path)
    text = (tmp_path / f"{BASE}.json").read_text()

    def refuse(name):
        raise AssertionError(f"bare {name} in the manifest")

    manifest = json.loads(text, parse_constant=refuse)
    assert manifest["best"] is None
    assert math.isnan(read_record(tmp_path, BASE).points["eval_return"].iloc[0])  # data keep their NaN
