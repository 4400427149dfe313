"""A study root of files alone (what a commit of ``results/<study>/`` holds) continues where the
machine that wrote it stopped: the catalog is rebuilt from the records and exported tables, the
instance learns what the records prove, and nothing finished is computed again."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from metapb2_core.catalog_rebuild import needs_rebuild, rebuild_catalog
from metapb2_core.errors import MetaPB2Error
from metapb2_core.store.staleness import partition_seed
from metapb2_core.study import StudyPaths
from metapb2_core.xla_setup import host_cpu

COMMITTED = ("study.yaml", "dagster.yaml", "runs", "meta", "portfolio", "tables")


def _clone_files(home: Path, dest: Path) -> Path:
    """What git keeps of a study root (.gitignore): the declaration and the finished files."""
    dest.mkdir()
    for name in COMMITTED:
        src = home / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("*.checkpoint*", ".*.tmp"))
        elif src.exists():
            shutil.copy(src, dest / name)
    return dest


def _report(stdout: str) -> str:
    """The main command's rank report, without the footer (run counts, seconds, paths)."""
    return stdout.rsplit("\n\n", 1)[0]


def test_a_fresh_copy_of_the_records_continues_without_recomputing(demo_study, tmp_path):
    home = demo_study["home"]
    assert sorted(p.name for p in (home / "tables").iterdir()) == [
        "candidates",
        "lineage",
        "performance_matrix",
        "portfolios",
        "ranks",
    ]
    clone = _clone_files(home, tmp_path / "clone")
    assert needs_rebuild(StudyPaths(clone, clone / "metapb2.duckdb"))
    env = {**demo_study["env"], "DAGSTER_HOME": str(clone)}
    exe = Path(sys.executable).with_name("metapb2-study")
    out = subprocess.run([str(exe)], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rebuilt the catalog from" in out.stderr
    assert "35 materialisations proven by the records reported to the instance" in out.stderr
    assert "0 runs, 35 steps up to date" in out.stdout
    assert _report(out.stdout) == _report(demo_study["first"].stdout)
    assert "Mean ranks on 3 independent units" in _report(out.stdout)


def test_a_rebuild_never_overwrites_a_catalog(demo_study, tmp_path):
    clone = _clone_files(demo_study["home"], tmp_path / "clone")
    paths = StudyPaths(clone, clone / "metapb2.duckdb")
    paths.database.write_bytes(b"")
    with pytest.raises(MetaPB2Error, match="exists"):
        rebuild_catalog(paths)


def test_an_interrupted_rebuild_leaves_no_catalog_and_the_next_one_is_whole(demo_study, tmp_path):
    """Ctrl-C midway (here: at the first progress report, a few records in) leaves no catalog that
    could read as complete, and nothing half-built beside it; the next rebuild loads every record."""
    clone = _clone_files(demo_study["home"], tmp_path / "clone")
    paths = StudyPaths(clone, clone / "metapb2.duckdb")
    seen = []

    def interrupt(done: int, total: int) -> None:
        seen.append((done, total))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rebuild_catalog(paths, interrupt, every_s=0)
    assert seen and 0 < seen[0][0] < seen[0][1], seen  # interrupted midway, not before or after
    assert not paths.database.exists() and needs_rebuild(paths)
    assert sorted(p.name for p in clone.iterdir()) == sorted(n for n in COMMITTED if (clone / n).exists())
    progress = []
    rebuilt = rebuild_catalog(paths, lambda done, total: progress.append((done, total)))
    original = StudyPaths(demo_study["home"], demo_study["home"] / "metapb2.duckdb").catalog()
    assert rebuilt.runs == original.count("runs") == paths.catalog().count("runs")
    assert progress[-1][0] == progress[-1][1] == seen[0][1]


def test_a_damaged_record_stops_the_study_command_by_name_and_restoring_it_heals(demo_study, tmp_path):
    clone = _clone_files(demo_study["home"], tmp_path / "clone")
    victim = sorted((clone / "runs").glob("pbt-*.points.parquet"))[0]
    good = victim.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01
    victim.write_bytes(bytes(damaged))
    env = {**demo_study["env"], "DAGSTER_HOME": str(clone)}
    exe = Path(sys.executable).with_name("metapb2-study")
    out = subprocess.run([str(exe)], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0, out.stdout[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("metapb2-study: ") and victim.name in last and "not rebuilt" in last, last
    assert not (clone / "metapb2.duckdb").exists()  # nothing that could pass for a catalog
    victim.write_bytes(good)  # restored: the next command rebuilds whole
    out = subprocess.run([str(exe)], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "24 of 24 planned evaluation runs passed their checks" in out.stdout
    assert "0 runs, 35 steps up to date" in out.stdout


def test_a_partial_ranking_says_n_of_m_first_and_the_study_command_fails_unless_allowed(demo_study, tmp_path):
    """One evaluation published as failed: the ranking rests on 23 of 24 runs, says so first, and
    the command exits 3; with --allow-partial it exits 0 with the same report."""
    clone = _clone_files(demo_study["home"], tmp_path / "clone")
    for table in (clone / "tables" / "lineage").glob("*.parquet"):
        rows = pd.read_parquet(table)
        hit = rows["asset_key"].str.endswith("evaluation_pbt")
        if hit.any():
            first = rows.index[hit][0]
            rows.loc[first, "status"] = "failed"
            rows.to_parquet(table, index=False)
            break
    else:
        pytest.fail("no lineage row of evaluation_pbt in the exported tables")
    env = {**demo_study["env"], "DAGSTER_HOME": str(clone)}
    exe = Path(sys.executable).with_name("metapb2-study")
    out = subprocess.run([str(exe)], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 3, out.stderr[-3000:]
    assert out.stdout.startswith("23 of 24 planned evaluation runs passed their checks"), out.stdout[:300]
    assert "pass --allow-partial" in out.stderr.strip().splitlines()[-1]
    again = subprocess.run(
        [str(exe), "--allow-partial"], cwd=clone, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert _report(again.stdout) == _report(out.stdout)


def test_metapb2_report_refuses_two_records_of_one_run(demo_study, tmp_path, capsys):
    from metapb2_core.cli import main

    runs = tmp_path / "runs"
    shutil.copytree(demo_study["home"] / "runs", runs, ignore=shutil.ignore_patterns("*.checkpoint*"))
    rid = sorted(p.name[: -len(".json")] for p in runs.glob("pbt-*.json"))[0]
    (runs / "copy").mkdir()
    for part in (".json", ".points.parquet", ".perturbations.parquet"):
        shutil.copy(runs / f"{rid}{part}", runs / "copy" / f"{rid}{part}")
    assert main(["report", str(runs), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"two records of run {rid!r}" in err[0], err
    assert str(runs / f"{rid}.json") in err[0] and str(runs / "copy" / f"{rid}.json") in err[0]


def test_a_record_no_lineage_publishes_stays_out(demo_study, tmp_path):
    clone = _clone_files(demo_study["home"], tmp_path / "clone")
    runs = clone / "runs"
    rid = sorted(p.name[: -len(".json")] for p in runs.glob("*.json"))[0]
    for part in (f"{rid}.json", f"{rid}.points.parquet", f"{rid}.perturbations.parquet"):
        shutil.copy(runs / part, runs / part.replace(rid, "orphan-" + rid, 1))
    manifest = json.loads((runs / f"orphan-{rid}.json").read_text())
    manifest["run_id"] = "orphan-" + rid
    (runs / f"orphan-{rid}.json").write_text(json.dumps(manifest))
    rebuilt = rebuild_catalog(StudyPaths(clone, clone / "metapb2.duckdb"))
    assert rebuilt.unpublished_records == ("orphan-" + rid,)
    catalog = StudyPaths(clone, clone / "metapb2.duckdb").catalog()
    original = StudyPaths(demo_study["home"], demo_study["home"] / "metapb2.duckdb").catalog()
    assert rebuilt.runs == original.count("runs")
    tables = ("runs", "run_points", "evaluations", "candidates", "performance_matrix", "ranks", "lineage")
    for table in tables:
        assert catalog.count(table) == original.count(table), table
    assert os.path.exists(clone / "metapb2.duckdb")


def test_study_report_is_made_from_the_files_and_ranks_as_the_catalog_does(demo_study, tmp_path):
    """`metapb2 study-report ROOT` from a copy of the files equals the ranks of the catalog that
    the runs wrote, and sets them beside the paper's numbers."""
    from metapb2_core.cli import main
    from metapb2_core.evaluation import evaluate
    from metapb2_core.evaluation.inference_tables import headline
    from metapb2_core.evaluation.study_ranking import coverage
    from metapb2_core.study import study_evaluation_runs
    from metapb2_core.study_report import RANKED_RUNS, study_evaluation
    from metapb2_core.study_spec import declared_study

    home = demo_study["home"]
    clone = _clone_files(home, tmp_path / "clone")
    assert main(["study-report", str(clone)]) == 0
    report = (clone / "REPORT.md").read_text()
    spec = declared_study(home)
    found = study_evaluation_runs(StudyPaths(home, home / "metapb2.duckdb").catalog(), spec)
    original = evaluate(found.points, failed=found.failed, perturbations=found.perturbations)
    again = study_evaluation(clone)
    rebuilt, machines = again.evaluation, again.machines
    pd.testing.assert_frame_equal(rebuilt.summary, original.summary)
    cpu = host_cpu()
    here = f"{cpu['cpu']}{', AVX-512' if cpu['avx512'] else ''}, {cpu['cores']} cores"
    assert len(machines) == 24 and set(machines["machine"]) == {here}  # the demo ran on this machine
    assert f"**{here}**: 3 (task, seed) cells with every method." in report
    assert headline(again.ranked, 40_000) in report
    listed = pd.read_csv(clone / "report" / RANKED_RUNS)
    assert sorted(listed["run_id"]) == sorted(set(found.points["run_id"]))
    for text in (
        "## What the data support",
        "Kendall τ",
        "Spearman ρ",
        "holds here",
        "Friedman + Nemenyi at 4,000 steps (point 5), primary",
        "complete (every task × method passed",
        "## What differs from the paper by design",
        "- **Budget.** 4,000 steps per member, 0.7% of the paper's 600,000: our last point lies at the "
        "paper's point 0.1 of 15",
        "- **Seeds.** 1 complete seed(s) of the paper's 10",
    ):
        assert text in report
    assert "complete (every task × method passed its checks): 0 (1 of the paper's 10)" in report
    assert "Partial result" not in report
    assert coverage(rebuilt, spec).loc[0].tolist() == [24, 24, 0, 3]  # planned, passed, failed, tasks
    assert coverage(rebuilt, spec).to_markdown() in report
    for figure in ("anytime_rank.png", "runtime.png", "rank_intervals.png", "performance_profile.png"):
        assert (clone / "report" / figure).stat().st_size > 10_000


COMMITTED_STUDY = Path(__file__).resolve().parents[1] / "results" / "classic-short"


@pytest.mark.skipif(not (COMMITTED_STUDY / "REPORT.md").exists(), reason="no committed REPORT.md yet")
def test_the_committed_report_is_what_its_records_give(tmp_path):
    """REPORT.md ranks exactly the records its ranked_runs.csv names (their points files' SHA-256
    included), and every section is what those records give: the headline, the tests on
    independent units beside the paper's, the mean ranks with intervals, the paper side by side,
    each seed alone and the findings. Records committed after it (a study midway) are not in it."""
    from metapb2_core.evaluation.inference_tables import headline, mean_ranks_table, tests_table
    from metapb2_core.evaluation.paper import CLASSIC
    from metapb2_core.evaluation.reproduction import findings_md, per_seed_md, side_by_side
    from metapb2_core.study_report import RANKED_RUNS, read_ranked_runs, study_evaluation
    from metapb2_core.study_spec import declared_study

    listed = pd.read_csv(COMMITTED_STUDY / "report" / RANKED_RUNS)
    for row in listed.itertuples():
        manifest = json.loads((COMMITTED_STUDY / "runs" / f"{row.run_id}.json").read_text())
        assert manifest["record_files"]["points"]["sha256"] == row.points_sha256, row.run_id
    found = study_evaluation(COMMITTED_STUDY, read_ranked_runs(COMMITTED_STUDY / "report" / RANKED_RUNS))
    rs, spec = found.ranked, declared_study(COMMITTED_STUDY)
    report = (COMMITTED_STUDY / "REPORT.md").read_text()
    assert headline(rs, 40_000) in report, (
        "REPORT.md is not what its listed records give: run `metapb2 study-report results/classic-short"
        " --allow-mixed-code` and commit it with them"
    )
    assert report.split("## What the data support")[0].count("> **") <= 2  # partial and mixed-code banners
    assert tests_table(rs, 40_000).to_markdown(disable_numparse=True) in report
    assert mean_ranks_table(rs).to_markdown(disable_numparse=True) in report
    assert side_by_side(rs, CLASSIC, 120_000, 600_000).to_markdown(disable_numparse=True) in report
    assert found.coverage.to_markdown() in report
    assert found.coverage.index.tolist() == list(spec.seeds)
    ranked = found.coverage.loc[sorted(rs.evaluation.scores["seed"].astype(int).unique())]
    assert (ranked["passed"] == ranked["planned"]).all(), found.coverage  # a seed midway is left out
    assert rs.inference.units.n == 16  # the faithful Pendulum's five contexts count once
    alone = "\n".join(per_seed_md(rs, CLASSIC))
    assert alone in report and "## Each seed ranked alone" in alone
    findings = findings_md(rs.evaluation, spec, found.matrix)
    assert all(line in report for line in findings)


def test_a_report_midway_through_a_seed_says_it_is_partial_above_everything(demo_study, tmp_path):
    """A study root committed midway (acrobot's evaluations not run yet, pendulum's PBT neither):
    the grid check alone sees only the tasks with runs, so the report says first how much of the
    plan it ranks, and ranks the one task where every method has a run."""
    from metapb2_core.cli import main
    from metapb2_core.evaluation.study_ranking import coverage
    from metapb2_core.study_report import study_evaluation
    from metapb2_core.study_spec import declared_study

    clone = _clone_files(demo_study["home"], tmp_path / "clone")
    for path in (clone / "tables" / "lineage").glob("asset_key=classic_evaluation_*.parquet"):
        lineage = pd.read_parquet(path)
        gone = lineage["partition"].str.endswith("acrobot-earth")
        if "classic_evaluation_pbt" in path.name:
            gone |= lineage["partition"].str.endswith("pendulum-earth")
        lineage[~gone].to_parquet(path, index=False)
    assert main(["study-report", str(clone)]) == 0
    report = (clone / "REPORT.md").read_text()
    head = report.split("## Scale")[0]
    assert (
        "> **Partial result.** 15 of 24 planned evaluation runs have passed their checks (0 failed). "
        "Every rank, test and score below is over the 1 of 3 tasks where all 8 methods have a run"
    ) in head
    ev = study_evaluation(clone).evaluation
    assert coverage(ev, declared_study(clone)).loc[0].tolist() == [24, 15, 0, 1]
    assert set(ev.values.index.get_level_values("task")) == {"cart_pole-earth"}


def test_a_study_with_no_finished_evaluation_says_so_instead_of_reporting(demo_study, tmp_path, capsys):
    """Before any evaluation's lineage is exported (a study midway through its portfolio), the
    report refuses with the count planned, not a table of nothing."""
    from metapb2_core.cli import main

    clone = _clone_files(demo_study["home"], tmp_path / "clone")
    for lineage in (clone / "tables" / "lineage").glob("asset_key=classic_evaluation_*.parquet"):
        lineage.unlink()
    assert main(["study-report", str(clone)]) == 2
    err = capsys.readouterr().err
    assert "no evaluation run of study 'demo' has finished yet (0 of 24 planned)" in err
    assert not (clone / "REPORT.md").exists()


def _records_per_seed(root: Path) -> dict[int, dict[str, int]]:
    """How many (task, method) cells of evaluations and meta runs each seed has records of under
    ``root/runs``, from the manifests (a cell re-run under a new run id, its old record kept for
    the committed report, counts once)."""
    cells: dict[int, dict[str, set]] = {}
    for manifest in (root / "runs").glob("*.json"):
        record = json.loads(manifest.read_text())
        kind = "meta" if record["tag"] == "meta" else "evaluation"
        per_seed = cells.setdefault(record["seed"], {"evaluation": set(), "meta": set()})
        per_seed[kind].add((record["task"], record["method"]))
    return {seed: {k: len(v) for k, v in kinds.items()} for seed, kinds in cells.items()}


@pytest.mark.skipif(not (COMMITTED_STUDY / "study.yaml").exists(), reason="no committed study")
@pytest.mark.slow  # copies and rebuilds the whole committed study (45 s)
def test_adding_a_seed_to_the_committed_study_leaves_its_complete_seeds_current(tmp_path):
    """Seeds are replicates: with one more seed declared beside the committed ones, no step of a
    complete seed (every evaluation and meta run recorded) becomes pending that was not pending
    without it (a step made by code that changed since is pending either way), while the new
    seed's every stage is (it has no record yet). Holds at any point of the study, a seed midway
    included."""
    import dagster as dg

    from metapb2_assets.resources import StudyStore
    from metapb2_assets.study_runner import StudyRunner, prepare_instance
    from metapb2_core.study_spec import declared_study

    clone = _clone_files(COMMITTED_STUDY, tmp_path / "clone")
    declared = declared_study(clone)
    records = _records_per_seed(clone)
    grid = len(declared.tasks) * len(declared.methods)
    complete = {s for s, n in records.items() if n == {"evaluation": grid, "meta": len(declared.tasks)}}
    assert 0 in complete, records
    in_tables = {int(f.stem.rsplit("seed=", 1)[1]) for f in clone.glob("tables/*/*seed=*.parquet")}
    new = max([*records, *in_tables, *declared.seeds]) + 1  # a seed no file of the study names
    spec = dataclasses.replace(declared, seeds=(*declared.seeds, new))
    store = StudyStore(root=str(clone), database=str(clone / "metapb2.duckdb"))
    prepare_instance(str(clone))
    instance = dg.DagsterInstance.from_config(str(clone))

    def pending_of(study) -> list:
        runner = StudyRunner(study, store=store)
        runner.adopt_records(instance, lambda _: None)
        return [s for phase in runner.phases() for s in runner.pending(phase) if s.partition]

    def seed_of(step) -> int:
        return int(partition_seed(step.partition))

    before = {s.describe() for s in pending_of(declared) if seed_of(s) in complete}
    pending = pending_of(spec)
    assert {s.describe() for s in pending if seed_of(s) in complete} == before
    stages = {s.stage.job for s in pending if seed_of(s) == new}
    assert len(stages) == len(spec.methods) + 4  # candidates, meta runs, matrix, portfolio
    assert sum(seed_of(s) == new for s in pending) == len(spec.tasks) * (3 + len(spec.methods)) + 1
