"""The whole classic smoke graph materialised in-process into a temporary Dagster instance, local
Ray and DuckDB catalog; then SQL on the catalog, lineage, checks, automation and the schedule."""

import dagster as dg
import pytest

from metapb2_assets.definitions import build_definitions
from metapb2_assets.resources import RayResource, StudyStore
from metapb2_assets.study_plan import StudyPlan, partition_key
from metapb2_core.checks import CHECKS
from metapb2_core.methods import METHODS

TASKS = ["cart_pole-earth", "acrobot-earth"]
MEMBERS, ITERATIONS, PERTURBATIONS = 4, 6, 2  # smoke budget: 3 intervals of 2 iterations, 1 exploit per round


@pytest.fixture(scope="module")
def study(tmp_path_factory, ray_head):
    home = tmp_path_factory.mktemp("dagster_home")
    store = StudyStore(root=str(home))
    defs = build_definitions(RayResource(address=ray_head), store)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # 5 candidates per task: a target's portfolio (5 entries) comes from the one other environment
    plan = StudyPlan("classic", TASKS, [0], "smoke", resources=defs.resources, best=5, configs=10)
    results = plan.run(str(home), workers=1)  # in-process; tests/test_assets_concurrency.py runs 4 at once
    instance = dg.DagsterInstance.from_config(str(home))
    return {"defs": defs, "instance": instance, "store": store, "plan": plan, "results": results}


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
        else:
            assert partitions <= instance.get_materialized_partitions(key), key


def test_all_checks_ran_and_passed(study):
    evaluations = [c for r in study["results"] for c in r.checks]
    run_assets = 2 * (1 + len(METHODS))  # meta_runs and every evaluation, on both tasks
    assert len(evaluations) == run_assets * len(CHECKS)
    assert all(passed for _, passed in evaluations), [name for name, passed in evaluations if not passed]


def test_runs_points_and_perturbations_tables(study):
    runs = sql(study, "SELECT role, count(*) AS n FROM runs GROUP BY role ORDER BY role")
    assert dict(zip(runs["role"], runs["n"], strict=True)) == {"evaluation": 2 * len(METHODS), "meta": 2}
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
    assert set(cands["source_task"]) == set(TASKS) and set(cands["n"]) == {5}  # best 5 of 10 drawn
    matrix = sql(study, "SELECT task, count(*) AS n FROM performance_matrix GROUP BY task")
    assert set(matrix["task"]) == set(TASKS) and set(matrix["n"]) == {10}
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
        other = next(t for t in TASKS if t != target)
        for method in ("metaprior", "multitask", "taf"):
            rid = run_id_of(study, method, target)
            # the run id names its meta-data by content: a digest after the usual name
            assert rid.startswith(f"{method}-{target}-smoke-s0-") and len(rid.rsplit("-", 1)[1]) == 8
            mine = edges[edges["consumer_run_id"] == rid]
            assert set(mine["kind"]) == {"meta_data"}
            assert mine["producer_run_id"].tolist() == [f"pb2-{other}-smoke-s0-meta"]
        warm = edges[edges["consumer_run_id"] == run_id_of(study, "pb2_star_warm", target)]
        assert set(warm["kind"]) == {"portfolio"} and len(warm) == 5
        assert set(warm["producer_run_id"]) == {f"candidates-{other}-smoke-s0"}
        for method in ("pbt", "pb2", "random_search"):
            assert (edges["consumer_run_id"] == f"{method}-{target}-smoke-s0").sum() == 0
    lineage = sql(study, "SELECT * FROM lineage")
    assert not lineage.duplicated(["asset_key", "partition"]).any()
    row = lineage[
        (lineage["asset_key"] == "classic/evaluation_taf") & (lineage["partition"] == "0|cart_pole-earth")
    ]
    assert "pb2-acrobot-earth-smoke-s0-meta" in row["input_runs"].iloc[0]
    assert (
        row["code_version"].iloc[0]
        == study["defs"]
        .get_assets_def(dg.AssetKey(["classic", "evaluation_taf"]))
        .code_versions_by_key[dg.AssetKey(["classic", "evaluation_taf"])]
    )


def test_evaluations_ranks_and_metadata(study):
    ev = sql(study, "SELECT run_id, count(*) AS n FROM evaluations GROUP BY run_id")
    assert len(ev) == 2 * len(METHODS) and set(ev["n"]) == {3}  # three evaluation points each
    ranks = sql(study, "SELECT * FROM ranks WHERE family = 'classic'")
    assert set(ranks["method"]) == set(METHODS) and len(ranks) == 3 * len(METHODS)
    means = ranks.groupby("point")["mean_rank"].mean()  # ranks 1..k average to (k+1)/2
    assert means.round(6).eq((len(METHODS) + 1) / 2).all()
    event = (
        study["instance"]
        .get_latest_materialization_event(dg.AssetKey(["classic", "evaluation_pbt"]))
        .asset_materialization
    )
    md = event.metadata
    best = sql(study, "SELECT best_final_eval_return AS b FROM runs WHERE run_id = ?", [md["run_id"].value])
    assert md["final_best_return"].value == pytest.approx(best["b"].iloc[0])
    assert md["rows"].value == MEMBERS * ITERATIONS and md["env_steps_per_second"].value > 0
    assert md["learning_curve"].value.startswith("![learning curve](data:image/png;base64,")


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
    run = sql(study, "SELECT dagster_run_id FROM runs WHERE run_id = 'pbt-cart_pole-earth-smoke-s0'")
    assert run["dagster_run_id"].tolist() == [result.run_id]
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_num_requested(ranks_key) == 1  # a new evaluation landed
    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert third.get_num_requested(ranks_key) == 0  # handled; nothing new since


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
