"""The README's main command's demo study (conftest.demo_study: 3 tasks × 1 seed, every asset,
through the stage jobs, into a temporary Dagster instance, the session's local Ray and a DuckDB
catalog); then SQL on the catalog, lineage, checks, run tags, skipping, automation and the schedule."""

from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from metapb2_assets.family import partition_key
from metapb2_assets.resources import RayResource, StudyStore
from metapb2_assets.study_runner import StudyRunner
from metapb2_core.checks import CHECKS
from metapb2_core.methods import METHODS
from metapb2_core.study_spec import DEMO

TASKS = list(DEMO.tasks)
# demo budget: 5 intervals of 2 iterations, 1 exploit in each of the 4 perturbation rounds
MEMBERS, ITERATIONS, PERTURBATIONS, POINTS = 4, 10, 4, 5
RUNS = 3 + 3 + 3 + 1 + 3 * len(METHODS) + 1  # candidates, meta, matrix, portfolio, evaluations, ranks


@pytest.fixture(scope="module")
def study(demo_study, ray_head):
    home = demo_study["home"]
    store = StudyStore(root=str(home))
    runner = StudyRunner(DEMO, RayResource(address=ray_head), store)
    instance = dg.DagsterInstance.from_config(str(home))
    return {
        "defs": runner.defs, "instance": instance, "store": store, "runner": runner,
        "home": str(home), "spec": DEMO, "made": demo_study,
    }  # fmt: skip


def sql(study, query, params=None):
    return study["store"].paths().catalog().query(query, params)


def test_every_asset_and_partition_is_materialised(study):
    instance = study["instance"]
    partitions = {partition_key(t, 0) for t in TASKS}
    for asset in study["defs"].assets:
        key = asset.key
        if key.path[0] != "classic":
            continue
        if asset.partitions_def is None:
            assert instance.get_latest_materialization_event(key) is not None, key
        elif isinstance(asset.partitions_def, dg.MultiPartitionsDefinition):
            assert partitions <= instance.get_materialized_partitions(key), key
        else:  # the portfolio: one per seed
            assert instance.get_materialized_partitions(key) == {"0"}, key


def test_all_checks_ran_and_passed(study):
    instance = study["instance"]
    evaluations = [
        e.dagster_event.event_specific_data
        for r in instance.get_runs()
        for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    run_assets = 3 * (1 + len(METHODS))  # meta_runs and every evaluation, on the three tasks
    assert len(evaluations) == run_assets * len(CHECKS)
    assert all(e.passed for e in evaluations), [
        (e.asset_key, e.check_name) for e in evaluations if not e.passed
    ]


def test_the_main_command_printed_the_rank_table_and_its_no_op_re_run_skipped_everything(study):
    first, again = study["made"]["first"], study["made"]["again"]
    assert f"{RUNS} runs, 0 steps up to date" in first.stdout and "Final scores" in first.stdout
    assert f"0 runs, {RUNS} steps up to date" in again.stdout
    assert "declared study 'demo'" in first.stderr  # the study.yaml it wrote for the UI


def test_runs_points_and_perturbations_tables(study):
    runs = sql(study, "SELECT role, count(*) AS n FROM runs GROUP BY role ORDER BY role")
    assert dict(zip(runs["role"], runs["n"], strict=True)) == {"evaluation": 3 * len(METHODS), "meta": 3}
    points = sql(
        study, "SELECT run_id, count(*) AS n, count(DISTINCT member) AS m FROM run_points GROUP BY run_id"
    )
    assert set(points["n"]) == {MEMBERS * ITERATIONS} and set(points["m"]) == {MEMBERS}
    pert = sql(
        study,
        "SELECT r.method, count(p.run_id) AS n FROM runs r LEFT JOIN perturbations p USING (run_id) "
        "GROUP BY r.run_id, r.method",
    )
    for method, n in zip(pert["method"], pert["n"], strict=True):
        assert n == (0 if method == "random_search" else PERTURBATIONS), method
    dup = sql(
        study, "SELECT count(*) - count(DISTINCT (run_id, member, training_iteration)) AS d FROM run_points"
    )
    assert dup["d"].iloc[0] == 0


def test_portfolio_tables_and_leave_one_environment_out(study):
    cands = sql(study, "SELECT source_task, count(*) AS n FROM candidates GROUP BY source_task")
    assert set(cands["source_task"]) == set(TASKS) and set(cands["n"]) == {3}  # best 3 of 30 drawn
    matrix = sql(study, "SELECT task, count(*) AS n FROM performance_matrix GROUP BY task")
    assert set(matrix["task"]) == set(TASKS) and set(matrix["n"]) == {9}  # every candidate on each task
    port = sql(
        study, "SELECT target_task, source_task, position FROM portfolios ORDER BY target_task, position"
    )
    assert port["target_task"].nunique() == 20  # every classic task gets one, seen or not
    for _, rows in port.groupby("target_task"):
        target = rows["target_task"].iloc[0]
        assert rows["position"].tolist() == [0, 1, 2, 3, 4]
        env = lambda task: task.split("-")[0]  # noqa: E731
        sources, others = {env(s) for s in rows["source_task"]}, {env(t) for t in TASKS} - {env(target)}
        # Never the target's own environment. A target of a third environment takes the top 5 of
        # both source environments' candidates by score, which may all come from one of them.
        assert sources <= others and (sources == others if len(others) == 1 else sources)


def run_id_of(study, method, task):
    found = sql(
        study, "SELECT run_id FROM runs WHERE method = ? AND task = ? AND role = 'evaluation'", [method, task]
    )
    (rid,) = found["run_id"]
    return rid


def test_lineage_edges_from_evaluations_to_the_meta_runs_and_portfolio_they_used(study):
    edges = sql(study, "SELECT * FROM meta_usage")
    for target in TASKS:
        others = sorted(t for t in TASKS if t != target)  # leave-one-task-out: the other two
        for method in ("metaprior", "multitask", "taf"):
            rid = run_id_of(study, method, target)
            # the run id names its meta-data by content: a digest after the usual name
            assert rid.startswith(f"{method}-{target}-demo-s0-") and len(rid.rsplit("-", 1)[1]) == 8
            mine = edges[edges["consumer_run_id"] == rid]
            assert set(mine["kind"]) == {"meta_data"}
            assert sorted(mine["producer_run_id"]) == [f"pb2-{o}-demo-s0-meta" for o in others]
        warm = edges[edges["consumer_run_id"] == run_id_of(study, "pb2_star_warm", target)]
        assert set(warm["kind"]) == {"portfolio"} and len(warm) == 5
        assert set(warm["producer_run_id"]) <= {f"candidates-{o}-demo-s0" for o in others}
        for method in ("pbt", "pb2", "random_search"):
            assert (edges["consumer_run_id"] == f"{method}-{target}-demo-s0").sum() == 0
    lineage = sql(study, "SELECT * FROM lineage")
    assert not lineage.duplicated(["asset_key", "partition"]).any()
    row = lineage[
        (lineage["asset_key"] == "classic/evaluation_taf") & (lineage["partition"] == "0|cart_pole-earth")
    ]
    assert "pb2-acrobot-earth-demo-s0-meta" in row["input_runs"].iloc[0]
    code = (
        study["defs"]
        .get_assets_def(dg.AssetKey(["classic", "evaluation_taf"]))
        .code_versions_by_key[dg.AssetKey(["classic", "evaluation_taf"])]
    )
    assert row["code_version"].iloc[0] == f"{code}@demo"  # the code, and the budget it ran at


def test_evaluations_ranks_and_metadata(study):
    ev = sql(study, "SELECT run_id, count(*) AS n FROM evaluations GROUP BY run_id")
    assert len(ev) == 3 * len(METHODS) and set(ev["n"]) == {POINTS}  # an evaluation per interval
    ranks = sql(study, "SELECT * FROM ranks WHERE family = 'classic'")
    assert set(ranks["method"]) == set(METHODS) and len(ranks) == POINTS * len(METHODS)
    means = ranks.groupby("point")["mean_rank"].mean()  # ranks 1..k average to (k+1)/2
    assert means.round(6).eq((len(METHODS) + 1) / 2).all()
    event = (
        study["instance"]
        .get_latest_materialization_event(dg.AssetKey(["classic", "evaluation_pbt"]))
        .asset_materialization
    )
    md = event.metadata
    best = sql(study, "SELECT best_final_eval_return AS b FROM runs WHERE run_id = ?", [md["run_id"].value])
    shown = float(md["final_best_return"].value.replace("\N{MINUS SIGN}", "-").replace(",", ""))
    assert shown == pytest.approx(best["b"].iloc[0], abs=0.05)  # rounded to 0.1 for the UI
    assert md["rows"].value == MEMBERS * ITERATIONS and md["throughput"].value.endswith(" env-steps/s")
    assert md["wall_time"].value.endswith((" s", " min", " h")) and md["task"].value in TASKS
    assert md["learning_curve"].value.startswith("![learning curve](data:image/png;base64,")


def test_every_run_is_a_named_stage_job_tagged_with_study_stage_method_and_budget(study):
    runs = study["instance"].get_runs()
    assert len(runs) == RUNS
    for r in runs:
        t = r.tags
        assert t["metapb2/study"] == "demo" and t["metapb2/budget"] == "demo", t
        if t["metapb2/stage"] == "evaluation":
            assert r.job_name == f"classic_evaluation_{t['metapb2/method']}"
        else:
            assert "metapb2/method" not in t and r.job_name.startswith("classic_"), r.job_name
    stages = Counter(r.tags["metapb2/stage"] for r in runs)
    assert stages == {"candidates": 3, "meta": 3, "matrix": 3, "portfolio": 1, "evaluation": 24, "ranks": 1}


def test_the_study_run_again_skips_everything_and_another_budget_redoes_everything(study):
    runner = study["runner"]
    results, skipped = runner.run(study["home"], workers=1)
    assert results == [] and skipped == RUNS
    other = StudyRunner(study["spec"].with_changes(budget="smoke"), runner.resources["ray"], study["store"])
    assert [len(other.pending(p)) for p in other.phases()] == [len(p) for p in other.phases()]


def test_a_phase_runs_seed_after_seed_and_each_partition_with_all_its_stages(study):
    """A study that spans sessions completes whole seeds first, and a task's methods run close
    together (on one machine, so their run times compare)."""
    spec = study["spec"].with_changes(seeds=[0, 1])
    runner = StudyRunner(spec, study["runner"].resources["ray"], study["store"])
    first, *_, evaluations, ranks = runner.phases()
    keys = [f"{seed}|{task}" for seed in spec.seeds for task in spec.tasks]
    assert [(s.partition, s.stage.job) for s in evaluations] == [
        (k, f"classic_evaluation_{m}") for k in keys for m in spec.methods
    ]
    assert [(s.partition, s.stage.job) for s in first] == [
        (k, job) for k in keys for job in ("classic_candidates", "classic_meta_runs")
    ]
    assert [(s.partition, s.stage.job) for s in ranks] == [(None, "classic_method_ranks")]


def test_check_results_carry_their_partition_run_task_and_seed(study):
    instance = study["instance"]
    key = dg.AssetKey(["classic", "evaluation_taf"])
    (run,) = instance.get_runs(
        dg.RunsFilter(job_name="classic_evaluation_taf", tags={"dagster/partition": "0|acrobot-earth"})
    )
    logs = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evals = [e.dagster_event.event_specific_data for e in logs]
    assert {e.check_name for e in evals} == set(CHECKS) and all(e.asset_key == key for e in evals)
    for e in evals:
        assert e.partition == "0|acrobot-earth"
        assert (
            e.description.startswith("taf-acrobot-earth-demo-s0-")
            and "(acrobot-earth, seed 0): " in e.description
        )
        assert e.metadata["task"].value == "acrobot-earth" and e.metadata["seed"].value == 0


def test_ranks_metadata_shows_completeness_final_table_and_tests_inline(study):
    md = (
        study["instance"]
        .get_latest_materialization_event(dg.AssetKey(["classic", "method_ranks"]))
        .asset_materialization.metadata
    )
    n = 3 * len(METHODS)
    assert md["completeness"].value.startswith(f"{n} of {n} planned evaluation runs passed their checks")
    rows = [r.data for r in md["final_return"].value.records]
    assert [r["task"] for r in rows] == sorted(TASKS) + ["mean normalised score"]
    assert set(rows[0]) == {"task", *METHODS}
    for r in rows[:-1]:  # one winner starred per row, unless the best mean is tied
        starred = [m for m in METHODS if r[m].startswith("★ ")]
        best = max(float(r[m].lstrip("★ ").replace("−", "-").replace(",", "")) for m in METHODS)
        assert len(starred) <= 1 and all(
            float(r[m].lstrip("★ ").replace("−", "-").replace(",", "")) == best for m in starred
        )
    ranked = [r.data for r in md["rank_table"].value.records]
    assert len(ranked) == len(METHODS) and all(len(r["anytime rank (█ = 1st)"]) == POINTS for r in ranked)
    assert all(0 <= float(rows[-1][m]) <= 1 for m in METHODS)  # normalised, not raw returns averaged
    tests = [r.data for r in md["tests"].value.records]
    assert tests[0]["test"].endswith("primary") and tests[0]["n"] == "3"  # 3 tasks, 1 seed
    assert "as in the paper" in tests[-1]["test"]
    assert md["what_the_data_support"].value.startswith("At α = 0.05 on 3 independent tasks")
    assert {r["method"] for r in (x.data for x in md["mean_ranks_with_intervals"].value.records)} == set(
        METHODS
    )
    assert md["runs"].value == n and md["newest_run_landed"].value.endswith(" UTC")
    assert md["anytime_rank"].value.startswith("![anytime mean rank](data:image/png;base64,")


def test_rematerialising_replaces_rows_and_ranks_refresh_automatically(study):
    defs, instance = study["defs"], study["instance"]
    ranks_key = dg.AssetKey(["classic", "method_ranks"])
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    before = sql(study, "SELECT count(*) AS n FROM run_points")["n"].iloc[0]
    pk = partition_key("cart_pole-earth", 0)
    result = dg.materialize(
        list(defs.assets),
        instance=instance,
        partition_key=pk,
        resources=defs.resources,
        selection=[dg.AssetKey(["classic", "evaluation_pbt"])],
    )
    assert sql(study, "SELECT count(*) AS n FROM run_points")["n"].iloc[0] == before
    run = sql(study, "SELECT dagster_run_id FROM runs WHERE run_id = 'pbt-cart_pole-earth-demo-s0'")
    assert run["dagster_run_id"].tolist() == [result.run_id]
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_num_requested(ranks_key) == 1  # a new evaluation landed
    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert third.get_num_requested(ranks_key) == 0  # handled; nothing new since


def test_a_re_run_that_reproduces_its_record_keeps_it_and_one_that_differs_replaces_it(study):
    """Re-running an unchanged request gives the same values: the record's files stay as they were
    (a report citing them by digest stays valid) while the lineage names the new run; a record that
    does not match what the run computes is replaced."""
    from metapb2_core.store import read_record, write_record

    defs, instance = study["defs"], study["instance"]
    runs, rid = Path(study["home"]) / "runs", "pbt-acrobot-earth-demo-s0"
    key = dg.AssetKey(["classic", "evaluation_pbt"])

    def materialise() -> dict:
        result = dg.materialize(
            list(defs.assets), instance=instance, partition_key=partition_key("acrobot-earth", 0),
            resources=defs.resources, selection=[key],
        )  # fmt: skip
        lineage = sql(study, "SELECT dagster_run_id FROM runs WHERE run_id = ?", [rid])
        assert lineage["dagster_run_id"].tolist() == [result.run_id]
        return instance.get_latest_materialization_event(key).asset_materialization.metadata

    files = {p.name: p.read_bytes() for p in runs.glob(f"{rid}.*")}
    assert materialise()["reproduced_existing_record"].value is True
    assert {p.name: p.read_bytes() for p in runs.glob(f"{rid}.*")} == files  # and no checkpoint left

    altered = read_record(runs, rid)
    altered.points.loc[altered.points.index[-1], "eval_return"] += 1.0
    write_record(altered, runs)
    assert materialise()["reproduced_existing_record"].value is False
    restored = read_record(runs, rid)
    assert restored.points["eval_return"].iloc[-1] == altered.points["eval_return"].iloc[-1] - 1.0
    assert restored.points.drop(columns=["wall_seconds", "total_run_time"]).equals(
        read_record_from(files, rid).points.drop(columns=["wall_seconds", "total_run_time"])
    )


def read_record_from(files: dict[str, bytes], rid: str):
    """The record held in ``files`` (name → bytes), read from a temporary folder."""
    import tempfile

    from metapb2_core.store import read_record

    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
        return read_record(d, rid)


def test_schedule_reruns_the_evaluations_whose_inputs_changed(study):
    defs, instance = study["defs"], study["instance"]
    schedule = defs.get_schedule_def("classic_rerun_stale_evaluations")
    ctx = dg.build_schedule_context(
        instance=instance, resources={"store": study["store"]}, repository_def=defs.get_repository_def()
    )
    assert schedule.evaluate_tick(ctx).run_requests == []  # everything up to date
    dg.materialize(
        list(defs.assets),
        instance=instance,
        partition_key=partition_key("acrobot-earth", 0),
        resources=defs.resources,
        selection=[dg.AssetKey(["classic", "meta_runs"])],
    )
    requests = schedule.evaluate_tick(ctx).run_requests
    got = sorted((r.asset_selection[0].path[-1], r.partition_key) for r in requests)
    want = sorted(
        (f"evaluation_{m}", partition_key(t, 0)) for m in ("metaprior", "multitask", "taf") for t in TASKS
    )
    assert got == want  # the meta methods of every partition; pbt, pb2, … and the warm start untouched


def test_the_readme_sql_queries_answer_on_the_catalog(study):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```sql\n(.*?)```", readme, re.S).group(1)
    queries = [q.strip() for q in block.split(";") if q.strip()]
    assert len(queries) == 5
    for q in queries:
        assert len(sql(study, q)) > 0, q
