"""Wall seconds of the README's main command, `metapb2-study` (the demo study: 35 named job runs,
every asset), into a fresh Dagster home, with an empty JAX compilation cache (a fresh machine) and
again with the cache it left (a second study), for 1 and 2 concurrent runs; then, in the last home,
the same command again (a no-op: everything up to date) and `dagster dev` until it serves the asset
graph. Prints and writes (JSON, default benchmarks/results/study.json) the figures.
Usage: python benchmarks/bench_study.py [--workers 1 2] [--out PATH]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def study(home: Path, workers: int, cache: Path) -> float:
    env = {**os.environ, "DAGSTER_HOME": str(home), "JAX_COMPILATION_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "metapb2-study"), "--workers", str(workers)], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"metapb2-study failed:\n{done.stderr[-3000:]}")
    return seconds


def fresh_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="bench_study_"))
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


def dagster_dev_until_graph(home: Path) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", str(ROOT / "workspace.yaml"), "-p", str(port), "-h", "127.0.0.1"],
        cwd=ROOT, env={**os.environ, "DAGSTER_HOME": str(home)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    query = json.dumps({"query": "{ assetNodes { id } }"}).encode()
    try:
        while time.perf_counter() - start < 300:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql", query, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=10) as r:
                    if json.loads(r.read())["data"]["assetNodes"]:
                        return time.perf_counter() - start
            except (OSError, KeyError, TypeError):
                time.sleep(0.25)
        sys.exit("dagster dev did not serve the asset graph in 300 s")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(90)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "study.json")
    args = p.parse_args()
    results = {"cpus": len(os.sched_getaffinity(0)), "runs": {}}
    home = None
    for w in args.workers:
        cache = Path(tempfile.mkdtemp(prefix="bench_study_cache_"))
        cold_home, home = fresh_home(), fresh_home()
        cold = study(cold_home, w, cache)
        warm = study(home, w, cache)
        shutil.rmtree(cold_home, ignore_errors=True)
        results["runs"][f"workers={w}"] = {"cold_cache_s": round(cold, 1), "warm_cache_s": round(warm, 1)}
        print(f"workers={w}: {cold:6.1f} s with an empty compilation cache, {warm:6.1f} s with a warm one")
        noop = study(home, w, cache)
        results["runs"][f"workers={w}"]["no_op_rerun_s"] = round(noop, 1)
        print(f"workers={w}: {noop:6.1f} s for the same command again (every step up to date)")
        shutil.rmtree(cache, ignore_errors=True)
    graph = dagster_dev_until_graph(home)
    results["dagster_dev_until_asset_graph_s"] = round(graph, 1)
    print(f"dagster dev: {graph:6.1f} s until GraphQL serves the asset graph of the demo study")
    shutil.rmtree(home, ignore_errors=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
