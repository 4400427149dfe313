"""``metapb2-study``: materialise a family's whole asset graph for some tasks and seeds, in order,
into the Dagster instance at $DAGSTER_HOME (default ./dagster_home) and its DuckDB catalog, then
print the rank table. Every step is an ordinary Dagster materialisation: the UI shows them all."""

import argparse
import os
import sys
import time
from pathlib import Path

DEFAULT_TASKS = ["cart_pole-earth", "acrobot-earth", "pendulum-earth"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metapb2-study", description=__doc__)
    p.add_argument("--family", default="classic", help="task family (default classic)")
    p.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, help="tasks (default: %(default)s)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default 0)")
    p.add_argument(
        "--budget",
        default="demo",
        help="budget preset (default demo: smoke sizes over 5 intervals, so every method does its real work)",
    )
    p.add_argument("--faithful", action="store_true", help="reproduce the original code's quirks")
    p.add_argument("--methods", nargs="*", help="evaluate only these methods (default: all registered)")
    p.add_argument(
        "--workers", type=int, default=2, help="concurrent partition runs (default 2, the CPUs of a laptop)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("DAGSTER_HOME", str(Path("dagster_home").resolve()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)

    from metapb2_assets.study_plan import StudyPlan
    from metapb2_core.errors import MetaPB2Error

    try:
        plan = StudyPlan(args.family, args.tasks, args.seeds, args.budget, args.faithful, args.methods)
    except MetaPB2Error as e:
        print(f"metapb2-study: error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()

    def echo(step: int, selection, partition) -> None:
        names = ", ".join(k.path[-1] for k in selection)
        where = f" [{partition}]" if partition else ""
        print(
            f"[{step:>3}/{plan.n_steps}] {time.perf_counter() - start:5.0f}s  {names}{where}", file=sys.stderr
        )

    from metapb2_assets import ray_cluster
    from metapb2_assets.resources import default_home

    ray_state = default_home() / ".ray"
    had_head = ray_cluster.running_head(ray_state) is not None
    try:
        plan.run(os.environ["DAGSTER_HOME"], echo, workers=args.workers)
    except MetaPB2Error as e:
        print(f"metapb2-study: {e}", file=sys.stderr)
        return 1
    finally:
        if not had_head and not plan.resources["ray"].address:
            ray_cluster.release(ray_state)  # started for this study: do not leave it behind
    print(plan.report(), flush=True)
    home = os.environ["DAGSTER_HOME"]
    print(
        f"\ndone in {time.perf_counter() - start:.0f}s. Catalog: {plan.database()}\n"
        f"Open the UI: DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml  (then http://127.0.0.1:3000)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
