"""The ``metapb2`` command as a user runs it: a subprocess, its exit code, stdout and stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ENVS = ["mountain_car", "cart_pole", "pendulum", "acrobot"]
BRAX_ENVS = [
    "humanoid",
    "halfcheetah",
    "hopper",
    "humanoid_standup",
    "inverted_double_pendulum",
    "inverted_pendulum",
    "pusher",
    "reacher",
    "walker2d",
]
CONTEXTS = ["uranus", "venus", "saturn", "earth", "neptune"]


def metapb2(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "metapb2_core.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_list_tasks(tmp_path):
    res = metapb2("list", "tasks", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    expected = [f"{env}-{ctx}" for env in ENVS + BRAX_ENVS for ctx in CONTEXTS]
    assert len(expected) == 20 + 45
    assert res.stdout.splitlines() == expected
    assert res.stdout.endswith("\n")


def test_list_methods(tmp_path):
    res = metapb2("list", "methods", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    names = res.stdout.splitlines()
    assert {"pbt", "random_search"} <= set(names)
    assert len(names) == len(set(names))


def test_list_budgets(tmp_path):
    res = metapb2("list", "budgets", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["smoke", "demo", "short", "paper"]


RUN = ["run", "--task", "cart_pole-earth", "--method", "pbt", "--quiet"]
TAF = ["run", "--task", "cart_pole-earth", "--method", "taf", "--quiet"]
PORTFOLIO = ["portfolio", "--tasks", "acrobot-earth", "pendulum-earth", "--targets", "cart_pole-earth"]


def a_file(tmp_path):
    (tmp_path / "afile").write_text("not a directory")


def a_record(tmp_path) -> Path:
    """A runs folder holding one small sound record; returns its manifest."""
    from metapb2_core.store import RunRecord, write_record

    points = pd.DataFrame(
        {"run_id": "pb2-acrobot-earth-smoke-s0", "task": "acrobot-earth", "method": "pb2", "seed": 0,
         "member": [0], "timesteps": [800], "eval_return": [1.0], "eval_is_fresh": [True]}
    )  # fmt: skip
    meta = {"run_id": "pb2-acrobot-earth-smoke-s0", "task": "acrobot-earth", "method": "pb2", "seed": 0,
            "budget": "smoke", "budget_sizes": {}}  # fmt: skip
    return write_record(RunRecord(meta["run_id"], points, pd.DataFrame(), meta), tmp_path / "runs")["meta"]


def damaged_record(tmp_path):
    """A runs folder holding one record whose points file was truncated after it was written."""
    a_record(tmp_path)
    f = tmp_path / "runs" / "pb2-acrobot-earth-smoke-s0.points.parquet"
    f.write_bytes(f.read_bytes()[:40])


def spoiled_manifest(spoil):
    """A runs folder holding one record whose manifest was then edited by ``spoil``."""

    def setup(tmp_path):
        path = a_record(tmp_path)
        manifest = json.loads(path.read_text())
        spoil(manifest)
        path.write_text(json.dumps(manifest))

    return setup


def damaged_meta_table(tmp_path):
    (tmp_path / "meta" / "acrobot-earth").mkdir(parents=True)
    (tmp_path / "meta" / "acrobot-earth" / "pb2-acrobot-earth-smoke-s0.parquet").write_bytes(
        b"PAR1 cut short"
    )


def truncated_catalog(tmp_path):
    import duckdb

    db = tmp_path / "cat.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE runs AS SELECT range AS x FROM range(100000)")
    con.close()
    db.write_bytes(db.read_bytes()[:5000])


def corrupt_catalog(tmp_path):
    """A catalog of the right size whose first data block was overwritten: it opens and lists its
    tables; the damage shows only when a query reads that block."""
    import duckdb

    db = tmp_path / "cat.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE run_points AS SELECT range AS x, range * 0.5 AS y FROM range(300000)")
    con.close()
    data = bytearray(db.read_bytes())
    data[12288 + 1000 : 12288 + 9000] = b"\xff" * 8000  # after the 3 header pages of 4 KiB
    db.write_bytes(bytes(data))


# (arguments, what the one error line says, files made first): every bad input is refused with one
# line naming the field or file, exit 2, no traceback, before anything trains, and nothing written.
BAD_INPUT = {
    "unknown-task": (["run", "--task", "cart_pole-mars", "--method", "pbt"], "unknown task 'cart_pole-mars'", None),
    "unknown-method": (["run", "--task", "cart_pole-earth", "--method", "pb3"], "unknown method 'pb3'", None),
    "bad-budget": ([*RUN, "--budget", "huge"], "unknown budget 'huge'", None),
    "reversed-bounds": ([*RUN, "--bounds", "lr=1e-3:1e-5"], "'lr': bounds are reversed", None),
    "zero-log-bound": ([*RUN, "--bounds", "lr=0:1e-3"], "'lr': log-scaled bounds must be positive", None),
    "negative-log-bound": ([*RUN, "--bounds", "lr=-1e-5:1e-3"], "'lr': log-scaled bounds must be positive", None),
    "lr-outside-its-domain": ([*RUN, "--bounds", "lr=0.5:1"], "'lr': bounds [0.5, 1] leave its domain (0, 1)", None),
    "lambda-above-1": ([*RUN, "--bounds", "lambda=0.9:5"], "'lambda': bounds [0.9, 5] leave its domain [0, 1]", None),
    "lambda-below-0": ([*RUN, "--bounds", "lambda=-5:0.99"], "'lambda': bounds [-5, 0.99] leave its domain", None),
    "negative-clip": ([*RUN, "--bounds", "clip_param=-1:0.5"], "'clip_param': bounds [-1, 0.5] leave its domain (0, ∞)", None),
    "bounds-without-equals": ([*RUN, "--bounds", "lr1e-5:1e-3"], "bad bounds 'lr1e-5:1e-3'", None),
    "bounds-without-colon": ([*RUN, "--bounds", "lr=1e-5"], "bad bounds 'lr=1e-5'", None),
    "bounds-not-a-number": ([*RUN, "--bounds", "lr=x:1e-3"], "must be numbers", None),
    "bounds-unknown-name": ([*RUN, "--bounds", "beta=0.9:0.99"], "'beta'", None),
    "negative-seed": ([*RUN, "--seed", "-1"], "seed must be an integer in [0, 2^32), got -1", None),
    "seed-beyond-32-bits": ([*RUN, "--seed", "4294967296"], "seed must be an integer in [0, 2^32)", None),
    "run-out-is-a-file": ([*RUN, "--out", "afile"], "output directory afile is a file", a_file),
    "run-out-uncreatable": ([*RUN, "--out", "afile/sub"], "cannot create output directory afile/sub", a_file),
    "missing-task": (["run", "--method", "pbt"], "--task", None),
    "bad-list": (["list", "things"], "invalid choice", None),
    "meta-method-without-meta": (TAF, "needs meta-data: pass --meta", None),
    "missing-meta-dir": ([*TAF, "--meta", "nowhere"], "nowhere does not exist", None),
    "damaged-meta-table": ([*TAF, "--meta", "meta"], "pb2-acrobot-earth-smoke-s0.parquet has no manifest", damaged_meta_table),
    "truncated-catalog-as-meta": ([*TAF, "--meta", "cat.duckdb"], "cat.duckdb is not a valid DuckDB database", truncated_catalog),
    "warm-without-portfolio": (["run", "--task", "cart_pole-earth", "--method", "pb2_star_warm"], "needs a portfolio", None),
    "missing-portfolio": (
        ["run", "--task", "cart_pole-earth", "--method", "pb2_star_warm", "--portfolio", "p"],
        "no portfolio for task 'cart_pole-earth'",
        None,
    ),
    "meta-from-no-runs": (["meta", "nowhere", "--out", "m"], "runs folder nowhere does not exist", None),
    "meta-out-is-a-file": (["meta", ".", "--out", "afile"], "output directory afile is a file", a_file),
    "meta-from-a-damaged-record": (["meta", "runs", "--out", "m"], "points.parquet does not match its manifest", damaged_record),
    "report-of-a-damaged-record": (["report", "runs"], "points.parquet does not match its manifest", damaged_record),
    "report-alpha-above-1": (["report", ".", "--alpha", "1.5"], "--alpha must lie in (0, 1), got 1.5", None),
    "report-alpha-zero": (["report", ".", "--alpha", "0"], "--alpha must lie in (0, 1), got 0", None),
    "report-of-a-truncated-catalog": (["report", "cat.duckdb"], "cat.duckdb is not a valid DuckDB database", truncated_catalog),
    "report-of-a-corrupt-catalog": (["report", "cat.duckdb"], "cat.duckdb is not a valid DuckDB database (truncated, corrupt", corrupt_catalog),
    "meta-from-a-manifest-without-budget": (["meta", "runs", "--out", "m"], "pb2-acrobot-earth-smoke-s0.json lacks 'budget'", spoiled_manifest(lambda m: m.pop("budget"))),
    "report-of-a-manifest-without-task": (["report", "runs"], "pb2-acrobot-earth-smoke-s0.json lacks 'task'", spoiled_manifest(lambda m: m.pop("task"))),
    "report-of-a-manifest-without-record-files": (["report", "runs"], "pb2-acrobot-earth-smoke-s0.json: record_files has no size and digest of its points file (got [])", spoiled_manifest(lambda m: m.update(record_files=[]))),
    "portfolio-negative-seed": ([*PORTFOLIO, "--seeds", "-1", "--out", "p"], "seed must be an integer in [0, 2^32), got -1", None),
    "portfolio-no-configs": ([*PORTFOLIO, "--configs", "0", "--out", "p"], "configs (random configurations per task and seed) must be positive", None),
    "portfolio-no-intervals": ([*PORTFOLIO, "--intervals", "0", "--out", "p"], "intervals (each candidate's training) must be positive", None),
    "portfolio-best-above-configs": ([*PORTFOLIO, "--configs", "3", "--best", "4", "--out", "p"], "best (candidates kept per task and seed) must be in [1, 3]", None),
    "portfolio-size-zero": ([*PORTFOLIO, "--size", "0", "--out", "p"], "portfolio size must be positive, got 0", None),
    "portfolio-negative-size": ([*PORTFOLIO, "--size", "-2", "--out", "p"], "portfolio size must be positive, got -2", None),
    "portfolio-too-few-candidates": ([*PORTFOLIO, "--out", "p"], "a portfolio of 5 for 'cart_pole-earth' needs 5 candidates", None),
    "portfolio-out-is-a-file": ([*PORTFOLIO, "--best", "3", "--out", "afile"], "output directory afile is a file", a_file),
    "portfolio-only-the-target-environment": (
        ["portfolio", "--tasks", "cart_pole-venus", "cart_pole-saturn", "--targets", "cart_pole-earth", "--out", "p"],
        "leave nothing outside the environment of target 'cart_pole-earth'",
        None,
    ),
}  # fmt: skip


def main_in_process(args: list[str], cwd, capsys, monkeypatch) -> tuple[int, str, str]:
    """``metapb2 ARGS`` through the same ``main`` in this process (the modules are loaded once)."""
    from metapb2_core.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, capsys, monkeypatch):
    args, needle, setup = BAD_INPUT[case]
    if setup:
        setup(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code, out, err = main_in_process(args, tmp_path, capsys, monkeypatch)
    assert code == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("metapb2: error: ")
    assert needle in lines[0]
    assert "Traceback" not in err + out
    assert out == ""
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written (no ./runs)


@pytest.mark.parametrize(
    "case", ["unknown-task", "lambda-above-1", "missing-task", "report-of-a-truncated-catalog"]
)
def test_bad_input_from_a_real_process_is_one_line_and_exit_2(tmp_path, case):
    args, needle, setup = BAD_INPUT[case]
    if setup:
        setup(tmp_path)
    res = metapb2(*args, cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == "", (res.stdout, res.stderr)
    assert res.stderr.startswith("metapb2: error: ") and len(res.stderr.splitlines()) == 1
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_a_run_that_fails_its_checks_exits_1_naming_them_and_keeps_its_record_marked(tmp_path):
    from metapb2_core.store import read_record, record_ids

    res = metapb2("run", "--task", "pendulum-earth", "--method", "pbt", "--bounds", "lr=0.5:0.9", "--quiet", "--out", "o", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 1, res.stderr
    (line,) = res.stderr.splitlines()
    assert (
        line.startswith("metapb2: error: pbt-pendulum-earth-smoke-s0-")
        and "failed its checks: finite_returns (" in line
    )
    assert "record is kept in o, marked failed" in line and "Traceback" not in res.stderr
    (rid,) = record_ids(tmp_path / "o")
    meta = read_record(tmp_path / "o", rid).meta
    assert meta["status"] == "failed" and meta["failed_checks"] == ["finite_returns"]
    assert (
        not meta["checks"]["finite_returns"]["passed"]
        and meta["checks"]["hyperparameters_in_bounds"]["passed"]
    )


def test_run_smoke_writes_the_three_files(tmp_path):
    out = tmp_path / "records"
    res = metapb2(*RUN, "--budget", "smoke", "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    run_id = "pbt-cart_pole-earth-smoke-s0"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{run_id}.points.parquet", f"{run_id}.perturbations.parquet", f"{run_id}.json"]
    )
    assert res.stdout.startswith(f"{run_id}: best final eval return ")
    assert "2 perturbations" in res.stdout
    assert not [line for line in res.stderr.splitlines() if line.startswith("[")]  # --quiet: no progress

    points = pd.read_parquet(out / f"{run_id}.points.parquet")
    assert len(points) == 4 * 6
    assert set(points["run_id"]) == {run_id}
    assert len(pd.read_parquet(out / f"{run_id}.perturbations.parquet")) == 2
    meta = json.loads((out / f"{run_id}.json").read_text())
    assert meta["run_id"] == run_id and meta["task"] == "cart_pole-earth" and meta["method"] == "pbt"
    assert meta["faithful"] is False and meta["seed"] == 0 and meta["budget"] == "smoke"
    assert not (tmp_path / "runs").exists()  # --out was honoured, no default ./runs


def test_run_pb2_star_smoke_records_gp_diagnostics(tmp_path):
    import json

    import pandas as pd

    out = tmp_path / "records"
    args = ["run", "--task", "acrobot-earth", "--method", "pb2_star", "--budget", "smoke", "--quiet"]
    res = metapb2(*args, "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    pert = pd.read_parquet(out / "pb2_star-acrobot-earth-smoke-s0.perturbations.parquet")
    modes = [json.loads(d)["mode"] for d in pert["diagnostics"]]
    assert modes == ["prior_draw", "gp_ucb"]  # round 1 has no data; round 2 fits the GP
    gp = json.loads(pert["diagnostics"].iloc[1])
    assert gp["fallback"] is None and gp["n_rows"] == 4 and 0.01 <= gp["variance"] <= 100


@pytest.mark.slow  # ~22 s: two cold `metapb2 run` processes; run with -m slow
def test_a_run_from_the_compilation_cache_prints_no_cpu_feature_noise(tmp_path):
    # jaxlib logs an error-level "could lead to ... SIGILL" per cached program on AMD Zen CPUs
    # (a tuning hint mistaken for an instruction set); the run itself is fine
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "XLA_FLAGS")}
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "cache")
    outs = []
    for seed in ("0", "1"):
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "metapb2_core.cli",
                *RUN,
                "--seed",
                seed,
                "--budget",
                "smoke",
                "--out",
                "r",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        outs.append(res.stdout + res.stderr)
    assert any((tmp_path / "cache").iterdir())  # the second run loaded what the first compiled
    assert "SIGILL" not in outs[1] and "cpu_aot_loader" not in outs[1], outs[1][:2000]


def test_the_readme_meta_learning_and_warm_start_commands_work_as_written(tmp_path, capsys, monkeypatch):
    """Every `metapb2` line of the README's meta-learning block (the catalog one needs the platform:
    tests/test_meta_e2e.py covers it), in a fresh folder, in order: each must exit 0."""
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("### Meta-learning and warm starts", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        loop = re.match(r"for (\w+) in (.*?); do (.*?); done$", line.strip())
        if loop:
            var, values, body = loop.groups()
            commands += [body.replace(f"${var}", v) for v in values.split()]
        elif line.startswith("metapb2 ") and ".duckdb" not in line:
            commands.append(line.split("#")[0].strip())
    assert [c.split()[1] for c in commands] == ["run", "run", "run", "meta", "run", "portfolio", "run"]
    for command in commands:
        code, out, err = main_in_process(shlex.split(command)[1:], tmp_path, capsys, monkeypatch)
        assert code == 0, (command, err[-2000:])
    entries = json.loads((tmp_path / "portfolio" / "cart_pole-earth_portfolio.json").read_text())
    configs = [tuple(e[n] for n in ("lr", "lambda", "clip_param")) for e in entries]
    assert len(configs) == len(set(configs)) == 5  # no member twice
    assert not any(e["source_task"].startswith("cart_pole") for e in entries)
