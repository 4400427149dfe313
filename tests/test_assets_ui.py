"""The study at a glance, as a researcher sees it: the README's main command materialises the demo
study, `dagster dev` serves it, and a headless Chromium (Debian's, driven by Playwright) opens the
asset graph, an evaluation asset and method_ranks. GraphQL says every asset of the study is
complete, and a new evaluation refreshes method_ranks with nobody touching the UI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from metapb2_core.study_spec import DEMO

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ASSETS = [
    "portfolio_candidates", "performance_matrix", "portfolio", "meta_runs",
    *(f"evaluation_{m}" for m in DEMO.methods), "method_ranks",
]  # fmt: skip
FIGURES: dict[str, float] = {}  # printed at the end of the module: the closing note quotes them


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        out = json.loads(r.read())
    assert "errors" not in out, out["errors"]
    return out["data"]


@pytest.fixture(scope="module")
def demo_home(demo_study, tmp_path_factory):
    """A copy of the home the README's main command made (conftest.demo_study): `dagster dev`'s
    daemon and the refresh test add runs to it, which the platform tests must not see, whichever
    module runs first."""
    FIGURES.update(demo_study["figures"])
    home = tmp_path_factory.mktemp("ui_home") / "home"
    shutil.copytree(demo_study["home"], home)
    return home, {**demo_study["env"], "DAGSTER_HOME": str(home)}


@pytest.fixture(scope="module")
def dagster_dev(demo_home, tmp_path_factory):
    home, env = demo_home
    port = _free_port()
    logs = tmp_path_factory.mktemp("dev")
    log = open(logs / "dagster_dev.log", "wb")  # noqa: SIM115  a file: dagster dev blocks on a full pipe
    dagster = Path(sys.executable).with_name("dagster")
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", str(ROOT / "workspace.yaml"), "-p", str(port), "-h", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # a test run started in the background inherits SIGINT ignored; dagster dev must get it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    tail = lambda: (logs / "dagster_dev.log").read_bytes().decode(errors="replace")[-3000:]  # noqa: E731
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                if _graphql(port, "{ assetNodes { id } }")["assetNodes"]:
                    break
            except (OSError, KeyError, TypeError, AssertionError):
                pass
            assert proc.poll() is None, tail()
            time.sleep(0.5)
        else:
            pytest.fail(f"dagster dev did not serve the asset graph in 240 s:\n{tail()}")
        yield {"port": port, "home": home, "env": env, "started": start, "tail": tail}
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # dagster dev stops cleanly on SIGINT, not SIGTERM
        try:
            code = proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = f"no exit 90 s after SIGINT; log:\n{tail()}"
        log.close()
        print("\nUI figures: " + ", ".join(f"{k} {v:.1f}" for k, v in FIGURES.items()))
        assert code == 0, code


ASSET_QUERY = """
{ assetNodes(group: {groupName: "classic", repositoryName: "__repository__",
                     repositoryLocationName: "metapb2_assets.definitions:defs"}) {
    assetKey { path } isPartitioned
    partitionStats { numMaterialized numPartitions numFailed }
    assetMaterializations(limit: 1) { runId timestamp }
} }
"""


def test_graphql_every_asset_of_the_demo_study_is_complete(dagster_dev):
    nodes = _graphql(dagster_dev["port"], ASSET_QUERY)["assetNodes"]
    by_name = {n["assetKey"]["path"][-1]: n for n in nodes}
    assert sorted(by_name) == sorted(ASSETS)
    for name, n in by_name.items():
        if n["isPartitioned"]:  # "3 of 3": the partitions are the study's, not the family's 200
            k = 1 if name == "portfolio" else 3  # the portfolio is one per seed
            assert n["partitionStats"] == {"numMaterialized": k, "numPartitions": k, "numFailed": 0}, name
        else:
            assert n["assetMaterializations"], name
    sensors = _graphql(
        dagster_dev["port"],
        '{ sensorOrError(sensorSelector: {repositoryName: "__repository__", repositoryLocationName: '
        '"metapb2_assets.definitions:defs", sensorName: "refresh_method_ranks"}) '
        "{ ... on Sensor { sensorState { status } } } }",
    )
    assert sensors["sensorOrError"]["sensorState"]["status"] == "RUNNING"  # on out of the box


def _cli_tests(home: Path, tmp_path: Path):
    """The tests `metapb2 report` states over the same catalog (its tests.csv)."""
    import pandas as pd

    out = tmp_path / "cli_report"
    catalog = str(home / "metapb2.duckdb")
    cli = [sys.executable, "-m", "metapb2_core.cli", "report", catalog, "--out", str(out)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    tests = pd.read_csv(out / "tests.csv", index_col="test", dtype=str)
    assert len(tests) >= 2 and tests.index[0].startswith("Friedman + Nemenyi at"), tests
    return tests


def test_the_browser_shows_the_graph_a_complete_evaluation_and_the_rank_table(dagster_dev, tmp_path):
    if CHROMIUM is None:
        why = "Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
        if os.environ.get("METAPB2_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{dagster_dev['port']}"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})

        def skip_welcome() -> None:
            skip = page.get_by_role("button", name="Skip")  # the "Join the Dagster community" dialog
            if skip.count():
                skip.first.click()

        page.goto(f"{base}/asset-groups/classic")
        page.get_by_text("method_ranks").first.wait_for(timeout=120_000)
        FIGURES["dagster dev until the asset graph renders (s)"] = time.monotonic() - dagster_dev["started"]
        page.wait_for_timeout(2000)
        skip_welcome()
        for name in ASSETS:
            assert page.get_by_text(name, exact=True).count() >= 1, name
        page.screenshot(path=shots / "ui_asset_graph.png")

        page.goto(f"{base}/assets/classic/evaluation_pbt?view=partitions")
        page.get_by_text("Materialized (3)").wait_for(timeout=60_000)  # the study's 3 of 3
        assert page.get_by_text("Missing (0)").count() == 1
        page.screenshot(path=shots / "ui_evaluation_partitions.png")

        page.goto(f"{base}/assets/classic/evaluation_pbt")
        page.get_by_text("learning_curve", exact=True).wait_for(timeout=60_000)
        skip_welcome()
        page.screenshot(path=shots / "ui_evaluation.png")
        row = page.locator("tr", has=page.get_by_text("learning_curve", exact=True))
        row.get_by_text("[Show Markdown]").click()
        plot = page.locator('img[src^="data:image/png;base64,"]').first
        plot.wait_for(timeout=30_000)
        width = plot.evaluate("img => img.naturalWidth")
        assert width >= 600, width  # 5.5 in at 120 dpi: legible, not a thumbnail
        page.screenshot(path=shots / "ui_learning_curve.png")

        page.goto(f"{base}/assets/classic/method_ranks")
        page.get_by_text("completeness", exact=True).wait_for(timeout=60_000)
        skip_welcome()
        text = page.inner_text("body")
        assert "24 of 24 planned evaluation runs passed their checks" in text
        assert all(t in text for t in DEMO.tasks) and "★" in text  # the final-return table, inline
        assert "█" in text  # the anytime-rank sparklines
        for test, row in _cli_tests(dagster_dev["home"], tmp_path).iterrows():  # the CLI's tests, every one
            assert test in text, f"method_ranks lacks the CLI's test {test!r}"
            assert f"{row['p']}" in text and f"{row['CD']}" in text, (test, row["p"], row["CD"])
        assert "mean normalised score" in text  # across tasks only normalised means, not raw returns
        page.screenshot(path=shots / "ui_method_ranks.png")
        browser.close()
    if os.environ.get("METAPB2_DOCS_SCREENSHOTS"):  # refresh the README's copies
        for png in shots.glob("*.png"):
            shutil.copy(png, ROOT / "docs" / png.name)


@pytest.mark.slow  # waits for the automation sensor (33 s)
def test_a_new_evaluation_refreshes_method_ranks_with_nobody_touching_the_ui(dagster_dev, ray_head):
    from metapb2_assets.definitions import build_definitions
    from metapb2_assets.family import partition_key
    from metapb2_assets.resources import RayResource, StudyStore

    port, home = dagster_dev["port"], dagster_dev["home"]
    before = {n["assetKey"]["path"][-1]: n for n in _graphql(port, ASSET_QUERY)["assetNodes"]}
    old_run = before["method_ranks"]["assetMaterializations"][0]["runId"]

    defs = build_definitions(RayResource(address=ray_head), StudyStore(root=str(home)))
    result = defs.resolve_job_def("classic_evaluation_pbt").execute_in_process(
        instance=dg.DagsterInstance.from_config(str(home)), partition_key=partition_key("acrobot-earth", 0)
    )
    assert result.success
    landed = dg.DagsterInstance.from_config(str(home)).get_run_record_by_id(result.run_id).end_time
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        nodes = {n["assetKey"]["path"][-1]: n for n in _graphql(port, ASSET_QUERY)["assetNodes"]}
        latest = nodes["method_ranks"]["assetMaterializations"][0]
        if latest["runId"] not in (old_run, result.run_id):
            break
        time.sleep(3)
    else:
        pytest.fail(f"method_ranks was not refreshed within 300 s:\n{dagster_dev['tail']()}")
    record = dg.DagsterInstance.from_config(str(home)).get_run_record_by_id(latest["runId"])
    assert record.dagster_run.tags["dagster/sensor_name"] == "refresh_method_ranks"  # not launched by us
    assert record.create_timestamp.timestamp() > landed  # it was asked for after the evaluation landed
    assert (
        record.dagster_run.tags["metapb2/stage"] == "ranks"
        and record.dagster_run.tags["metapb2/study"] == "demo"
    )
