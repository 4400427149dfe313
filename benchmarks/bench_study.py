"""Wall seconds of the README's main command, `metapb2-study` (the classic smoke study: 11 steps,
33 population runs, every asset), into a fresh Dagster home, with an empty JAX compilation cache
(a fresh machine) and again with the cache it left (a second study), for 1 and 2 concurrent
partition runs. Prints and writes (JSON, default benchmarks/results/study.json) the figures.
Usage: python benchmarks/bench_study.py [--workers 1 2] [--out PATH]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_study(workers: int, cache: Path) -> float:
    home = Path(tempfile.mkdtemp(prefix="bench_study_"))
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "JAX_COMPILATION_CACHE_DIR": str(cache)}
    study = Path(sys.executable).with_name("metapb2-study")
    start = time.perf_counter()
    done = subprocess.run([str(study), "--workers", str(workers)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"metapb2-study failed:\n{done.stderr[-3000:]}")
    shutil.rmtree(home, ignore_errors=True)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "study.json")
    args = p.parse_args()
    results = {"cpus": len(os.sched_getaffinity(0)), "runs": {}}
    for w in args.workers:
        cache = Path(tempfile.mkdtemp(prefix="bench_study_cache_"))
        cold = timed_study(w, cache)
        warm = timed_study(w, cache)
        shutil.rmtree(cache, ignore_errors=True)
        results["runs"][f"workers={w}"] = {"cold_cache_s": round(cold, 1), "warm_cache_s": round(warm, 1)}
        print(f"workers={w}: {cold:6.1f} s with an empty compilation cache, {warm:6.1f} s with a warm one")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
