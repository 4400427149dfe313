"""What checkpointing costs: the share of a run's wall time spent saving its state after each interval.

- classic: one complete ``paper`` PBT run of cart_pole-earth (15 intervals, 14 checkpoints) with
  checkpoints on, through ``execute_run``; the loop times every save (device → host copy, pickle,
  fsync, rename), and that sum over the run's wall time is the cost.
- Brax: hopper-earth at the brax ``paper`` sizes (batch 25 000, 200 000-step intervals) for two
  intervals (one checkpoint, the same state a paper run saves 14 times): the save's seconds over the
  seconds of one interval is the cost per interval, hence of the run.
Each measurement runs in its own process (XLA is set up when JAX starts). Prints and writes JSON
(default benchmarks/results/checkpoint.json).
Usage: python benchmarks/bench_checkpoint.py [--skip-brax] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import run_child  # noqa: E402


def measure(task: str, intervals: int | None) -> dict:
    from metapb2_core.xla_setup import configure_host_devices

    configure_host_devices()

    from metapb2_core.run import RunRequest, execute_run
    from metapb2_core.store import checkpoint_path

    run = RunRequest(task, "pbt", 0, "paper").resolve()
    if intervals is not None:  # the paper sizes, fewer intervals
        budget = replace(run.budget, total_steps=intervals * run.budget.interval)
        run = replace(run, budget=budget)
    with tempfile.TemporaryDirectory() as out:
        record = execute_run(run, out_dir=out)
        size = checkpoint_path(out, run.run_id).stat().st_size
    m = record.meta
    n_saves = run.budget.num_intervals - 1
    # an interval's seconds: from one interval's end to the next's, less the save between them
    ends = record.points.groupby("round")["wall_seconds"].first()
    per_interval = float(ends.diff().dropna().median()) - m["checkpoint_seconds"] / n_saves
    return {
        "task": task,
        "intervals": run.budget.num_intervals,
        "checkpoints": n_saves,
        "checkpoint_bytes": size,
        "checkpoint_s_total": m["checkpoint_seconds"],
        "checkpoint_s_each": m["checkpoint_seconds"] / n_saves,
        "wall_s": m["wall_seconds"],
        "interval_s_after_the_first": per_interval,
        "share_of_run": m["checkpoint_seconds"] / m["wall_seconds"],
        "share_of_an_interval": m["checkpoint_seconds"] / n_saves / per_interval,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--skip-brax", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "checkpoint.json")
    args = p.parse_args()
    if args.child:
        task, intervals = args.child
        print(json.dumps(measure(task, None if intervals == "all" else int(intervals))))
        return
    results = {"classic paper run": run_child(__file__, ["cart_pole-earth", "all"], dict(os.environ))}
    if not args.skip_brax:
        results["brax paper sizes, 2 intervals"] = run_child(
            __file__, ["hopper-earth", "2"], dict(os.environ)
        )
    for name, r in results.items():
        print(
            f"{name} ({r['task']}): {r['checkpoints']} checkpoint{'s' if r['checkpoints'] > 1 else ''} "
            f"of {r['checkpoint_bytes'] / 1e6:.1f} MB, "
            f"{r['checkpoint_s_each'] * 1000:.0f} ms each; "
            f"an interval takes {r['interval_s_after_the_first']:.1f} s, "
            f"so checkpointing costs {100 * r['share_of_an_interval']:.2f} % of an interval "
            f"({100 * r['share_of_run']:.2f} % of this run's {r['wall_s']:.0f} s)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": {"cores": os.cpu_count()}, "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
