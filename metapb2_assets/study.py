"""``metapb2-study``: run the study declared in the study root ($DAGSTER_HOME, default ./dagster_home:
its ``study.yaml``, the demo when there is none) through its stage jobs into the Dagster instance and
its DuckDB catalog, skipping what is materialised and up to date, then print the rank table.

Flags change the declaration first (``--seeds 0 1`` adds seed 1 to the study, for the UI too)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from metapb2_assets.settings import DAGSTER_HOME_ENV, default_home
from metapb2_core.study_spec import DEMO


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metapb2-study", description=__doc__)
    p.add_argument("--study", type=Path, help="a study.yaml to declare in the study root and run")
    p.add_argument("--name", help="study name (default: the declared one, else demo)")
    p.add_argument("--family", help="task family")
    p.add_argument("--tasks", nargs="+", help=f"tasks (demo: {' '.join(DEMO.tasks)})")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (demo: 0)")
    p.add_argument("--budget", help="budget preset (demo: demo, smoke sizes over 5 intervals)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--faithful", action="store_true", default=None, help="the original code's quirks")
    mode.add_argument("--fixed", dest="faithful", action="store_false", help="the fixed behaviour (default)")
    p.add_argument("--methods", nargs="+", help="methods (default: all registered)")
    p.add_argument(
        "--workers", type=int, default=2, help="concurrent runs of a stage (default 2, the CPUs of a laptop)"
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="exit 0 although the ranking rests on fewer evaluation runs than the study plans",
    )
    return p


def declare(args: argparse.Namespace, root: Path, say) -> object:
    """The study of ``root`` after the flags: read, changed and written back when they change it."""
    from metapb2_core.study_spec import StudySpecError, declared_study, load_study, study_file, write_study

    try:
        on_disk = declared_study(root)
    except StudySpecError as e:
        if not args.study:
            raise
        say(f"replacing the root's unreadable declaration ({e})")
        on_disk = None
    base = (load_study(args.study) if args.study else on_disk) or DEMO
    spec = base.with_changes(
        name=args.name,
        family=args.family,
        tasks=args.tasks,
        seeds=args.seeds,
        budget=args.budget,
        faithful=args.faithful,
        methods=args.methods,
    )
    if on_disk != spec:
        path = write_study(spec, study_file(root))
        say(f"declared {spec.describe()} in {path}")
    return spec


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    home = str(default_home())
    os.environ[DAGSTER_HOME_ENV] = home  # what Dagster itself reads
    start = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {text}", file=sys.stderr, flush=True)

    from metapb2_assets import ray_cluster
    from metapb2_assets.resources import resources_from_env
    from metapb2_assets.study_runner import StudyRunner
    from metapb2_core.errors import MetaPB2Error
    from metapb2_core.evaluation.report import format_report
    from metapb2_core.store import ensure_writable_dir
    from metapb2_core.store.inflight import export_inflight, import_inflight

    try:  # before anything is declared or run (every run would fail on these), in this order:
        ray, store = resources_from_env()  # the deployment's variables parse
        ray.check_address()  # writes nothing
        ensure_writable_dir(home, "DAGSTER_HOME")  # the instance's run and event storage
        store.check()  # the records' folder and the catalog
        spec = declare(args, store.paths().root, say)
        runner = StudyRunner(spec, ray=ray, store=store)
    except MetaPB2Error as e:
        print(f"metapb2-study: error: {e}", file=sys.stderr)
        return 2
    say(spec.describe())
    root = store.paths().root
    carried = import_inflight(root)
    if carried.copied or carried.finished:
        say(f"runs in flight from {root / 'inflight'}: {carried.describe()}")
    ray_state = default_home() / ".ray"
    had_head = ray_cluster.running_head(ray_state) is not None
    try:
        results, skipped = runner.run(home, say, workers=args.workers)
    except MetaPB2Error as e:
        print(f"metapb2-study: {e}", file=sys.stderr)
        return 1
    finally:
        if not had_head and not runner.resources["ray"].address:
            ray_cluster.release(ray_state)  # started for this study: do not leave it behind
        carried = export_inflight(root)  # stopped midway or done: what another machine resumes from
        if carried.copied or carried.finished or carried.too_large:
            say(f"runs in flight kept in {root / 'inflight'}: {carried.describe()}")
    ranked = runner.ranking()
    print(format_report(ranked), flush=True)
    print(
        f"\n{len(results)} runs, {skipped} steps up to date, in {time.perf_counter() - start:.0f} s. "
        f"Catalog: {runner.paths.database}\n"
        f"Open the UI: DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml  (then http://127.0.0.1:3000)"
    )
    if ranked.partial and not args.allow_partial:
        print(
            f"metapb2-study: a partial result: {ranked.count_line()}; run again to complete it, "
            "or pass --allow-partial to accept it",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
