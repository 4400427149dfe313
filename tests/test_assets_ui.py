"""`dagster dev` on a free port: the asset graph and partition status over GraphQL, then a clean stop."""

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

from metapb2_assets.study_plan import partition_key

ROOT = Path(__file__).resolve().parents[1]
ASSET = ["classic", "evaluation_random_search"]

QUERY = """
{
  assetNodes { assetKey { path } groupName isPartitioned }
  assetNodeOrError(assetKey: {path: ASSET}) {
    ... on AssetNode { partitionStats { numMaterialized numPartitions } hasAssetChecks }
  }
}
""".replace("ASSET", json.dumps(ASSET))


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
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_dagster_dev_serves_the_graph_and_partition_status(tmp_path, ray_head):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with open(home / "dagster.yaml", "a") as f:  # no automation tick may launch a run mid-test
        f.write("auto_materialize:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)  # for this process's instance and the definitions it loads
    try:
        from metapb2_assets.definitions import build_definitions
        from metapb2_assets.resources import RayResource, StudyStore

        defs = build_definitions(RayResource(address=ray_head), StudyStore(root=str(home)))
        pk = partition_key("cart_pole-earth", 0)
        instance = dg.DagsterInstance.get()
        dg.materialize(
            list(defs.assets),
            instance=instance,
            resources=defs.resources,
            partition_key=pk,
            selection=[dg.AssetKey(ASSET)],
        )
    finally:
        del os.environ["DAGSTER_HOME"]

    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    dagster = Path(sys.executable).with_name("dagster")
    # a file, not a pipe: dagster dev blocks on a full pipe nobody reads (closed below)
    log = open(tmp_path / "dagster_dev.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", str(ROOT / "workspace.yaml"), "-p", str(port), "-h", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # a test run started in the background inherits SIGINT ignored; dagster dev must get it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    tail = lambda: (tmp_path / "dagster_dev.log").read_bytes().decode(errors="replace")[-2000:]  # noqa: E731
    try:
        deadline, data = time.monotonic() + 180, None
        while time.monotonic() < deadline:
            try:
                data = _graphql(port, QUERY)["data"]
                if data["assetNodes"]:  # the code location has loaded
                    break
            except (OSError, KeyError, TypeError):
                pass
            assert proc.poll() is None, tail()
            time.sleep(1)
        assert data and data["assetNodes"], "dagster dev did not serve the asset graph in time"
        nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        for name in ("portfolio_candidates", "performance_matrix", "portfolio", "meta_runs", "method_ranks"):
            assert nodes[f"classic/{name}"]["groupName"] == "classic"
        assert (
            nodes["classic/evaluation_pbt"]["isPartitioned"]
            and not nodes["classic/portfolio"]["isPartitioned"]
        )
        node = data["assetNodeOrError"]
        assert node["partitionStats"] == {"numMaterialized": 1, "numPartitions": 20 * 10}
        assert node["hasAssetChecks"]
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # dagster dev stops cleanly on SIGINT, not SIGTERM
        try:
            code = proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = f"no exit 90 s after SIGINT; log:\n{tail()}"
        log.close()
    assert code == 0, code
