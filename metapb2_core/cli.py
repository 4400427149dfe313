"""The ``metapb2`` command: ``metapb2 run ...`` and ``metapb2 list tasks|methods|budgets``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from metapb2_core.errors import FailedChecksError, MetaPB2Error

LISTABLE = ("tasks", "methods", "budgets")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        self.exit(2, f"metapb2: error: {message} (see '{self.prog} --help')\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="metapb2", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="one population run of a method on a task")
    run.add_argument("--task", required=True, help="task key, e.g. cart_pole-earth (metapb2 list tasks)")
    run.add_argument("--method", required=True, help="method name, e.g. pbt (metapb2 list methods)")
    run.add_argument("--seed", type=int, default=0, help="experiment seed (default 0)")
    run.add_argument("--budget", default="smoke", help="budget preset: smoke, short or paper (default smoke)")
    run.add_argument("--out", default="runs", type=Path, help="output directory (default ./runs)")
    run.add_argument(
        "--bounds",
        nargs="*",
        action="extend",
        default=[],
        metavar="NAME=LOW:HIGH",
        help="override search-space bounds, e.g. lr=1e-5:1e-3 (flags merge; a name given twice is refused)",
    )
    run.add_argument(
        "--faithful", action="store_true", help="reproduce the original code's quirks (methods.md §11)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument(
        "--restart",
        action="store_true",
        help="ignore a checkpoint of this run in --out (by default an interrupted run continues from it)",
    )
    run.add_argument(
        "--meta",
        metavar="DIR_OR_QUERY",
        help="meta-data for meta methods: a directory built by 'metapb2 meta', or a DuckDB catalog with "
        "an optional SQL condition on its runs table, e.g. \"dagster_home/metapb2.duckdb:role = 'meta'\"",
    )
    run.add_argument(
        "--portfolio",
        metavar="DIR_OR_JSON",
        help="portfolio directory or file for warm methods (built by 'metapb2 portfolio')",
    )

    meta = sub.add_parser("meta", help="build meta-data (per-task transition tables) from run records")
    meta.add_argument("runs", type=Path, help="directory of run records (metapb2 run --out)")
    meta.add_argument("--out", type=Path, required=True, help="meta-data directory to write")
    meta.add_argument(
        "--method", default="pb2", help="use the runs of this method (default pb2, as the paper)"
    )
    meta.add_argument(
        "--faithful",
        action="store_true",
        help="group transitions by hyperparameter values (quirk Q39), as faithful runs read them",
    )
    meta.add_argument("--role", help="only records of this role (a study's meta-data: 'meta')")

    port = sub.add_parser(
        "portfolio", help="portfolio pipeline: candidates, performance matrix, greedy portfolios"
    )
    port.add_argument(
        "--tasks", nargs="+", required=True, help="source tasks (candidates and matrix columns)"
    )
    port.add_argument("--targets", nargs="+", required=True, help="tasks to build a portfolio for")
    port.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default 0)")
    port.add_argument("--budget", default="smoke", help="budget preset sizing the runs (default smoke)")
    port.add_argument("--configs", type=int, default=30, help="random configurations per task and seed (30)")
    port.add_argument("--intervals", type=int, default=4, help="intervals each candidate trains (4)")
    port.add_argument("--best", type=int, default=1, help="candidates kept per task and seed (1)")
    port.add_argument(
        "--size", type=int, default=None, help="portfolio size (default: members + first-round exploits)"
    )
    port.add_argument(
        "--out", type=Path, required=True, help="directory for candidates, matrix and portfolios"
    )
    port.add_argument("--faithful", action="store_true", help="the original's selection (Q34) and exclusion")

    rep = sub.add_parser("report", help="rank table, statistics and plots over a folder of run records")
    rep.add_argument("runs", type=Path, help="directory of run records (metapb2 run --out) or a .duckdb file")
    rep.add_argument("--out", type=Path, help="directory for plots and tables (default RUNS/report)")
    rep.add_argument("--alpha", type=float, default=0.05, help="significance level of the tests (0.05)")
    rep.add_argument(
        "--role",
        default="evaluation",
        help="rank the runs of this role (a catalog's evaluation or meta runs; 'all': every role)",
    )

    srep = sub.add_parser(
        "study-report",
        help="REPORT.md of a reproduction study beside the paper's numbers, from its committed records",
    )
    srep.add_argument("root", type=Path, help="the study root (its study.yaml, runs/ and tables/)")
    srep.add_argument(
        "--allow-mixed-code",
        action="store_true",
        help="rank evaluation records of more than one commit (the report then says so first)",
    )
    srep.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="rank exactly the run ids of this file (a report's ranked_runs.csv), not every record",
    )

    imp = sub.add_parser(
        "import-tune",
        help="a Ray Tune experiment folder as a run record (then 'metapb2 meta --method tune' makes "
        "meta-data of it)",
    )
    imp.add_argument("experiment", type=Path, help="the experiment's folder (<storage_path>/<name>)")
    imp.add_argument("--task", required=True, help="the task name the experiment's meta-data go under")
    imp.add_argument(
        "--space",
        required=True,
        metavar="JSON_OR_FILE",
        help='the space it searched, e.g. \'{"lr": [1e-5, 0.1, "log"], "batch": ["choice", [16, 32]]}\'',
    )
    imp.add_argument("--metric", required=True, help="the result key to read as the return")
    imp.add_argument("--mode", choices=("max", "min"), default="max", help="max (default) or min")
    imp.add_argument("--time-attr", default="training_iteration", help="the result key of time")
    imp.add_argument("--seed", type=int, default=0, help="the seed to file the record under (0)")
    imp.add_argument("--method", default="tune", help="the method name of the record (default tune)")
    imp.add_argument("--out", type=Path, required=True, help="directory of run records to write into")

    lst = sub.add_parser("list", help="print registered names, one per line")
    lst.add_argument("what", choices=LISTABLE)
    return parser


def _progress(rounds_width: int):
    def show(r: int, rounds: int, steps: int, scores: np.ndarray, seconds: float) -> None:
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else -1
        eta = seconds / r * (rounds - r)
        print(
            f"[{r:>{rounds_width}}/{rounds}] {steps:>9,} steps/member  best eval {scores[best]:9.2f} "
            f"(member {best})  mean {np.nanmean(scores):9.2f}  {seconds:6.1f}s  ETA {eta:5.0f}s",
            file=sys.stderr,
            flush=True,
        )

    return show


def _list(what: str) -> list[str]:
    if what == "tasks":
        from metapb2_core.envs import TASKS

        return list(TASKS)
    if what == "methods":
        from metapb2_core.methods import METHODS

        return list(METHODS)
    from metapb2_core.budgets import BUDGET_NAMES

    return list(BUDGET_NAMES)


def _run(args: argparse.Namespace) -> None:
    from metapb2_core.checks import failure_summary
    from metapb2_core.run import RunRequest, check_run, execute_run, save_run
    from metapb2_core.space import parse_bounds
    from metapb2_core.store.files import check_writable_dir

    req = RunRequest(
        args.task,
        args.method,
        args.seed,
        args.budget,
        args.faithful,
        parse_bounds(args.bounds),
        meta=args.meta,
        portfolio=args.portfolio,
    )
    run = req.resolve()  # every name, number and input checked, before any compilation
    budget, rid = run.budget, run.run_id
    check_writable_dir(args.out)  # before the run, so a long run is never lost to a bad --out
    if not args.quiet:
        print(
            f"{rid}: {budget.population_size} members, {budget.num_intervals} intervals of "
            f"{budget.interval:,} steps (first interval includes compilation)",
            file=sys.stderr,
        )
    record = execute_run(
        run,
        progress=None if args.quiet else _progress(len(str(budget.num_intervals))),
        out_dir=args.out,
        restart=args.restart,
        say=lambda line: print(f"{rid}: {line}", file=sys.stderr, flush=True),
    )
    check_run(record, run)
    paths = save_run(record, args.out)
    m = record.meta
    print(
        f"{rid}: best final eval return {m['best_final_eval_return']:.2f}, "
        f"{m['wall_seconds']:.1f}s wall ({m['compile_seconds']:.1f}s first interval), "
        f"{m['env_steps_per_second']:,.0f} env-steps/s, {len(record.perturbations)} perturbations"
    )
    print(f"wrote {paths['points']}, {paths['perturbations'].name}, {paths['meta'].name}")
    if m["status"] == "failed":
        raise FailedChecksError(
            f"{rid} failed its checks: {failure_summary(m)}; the record is kept in {args.out}, marked failed"
        )


def _meta(args: argparse.Namespace) -> None:
    from metapb2_core.meta.tables import build_meta_dir

    # each record's own declared space: records of a custom (or mixed) space make meta-data too
    written = build_meta_dir(args.runs, args.out, None, args.method, args.faithful, args.role)
    tasks = sorted({p.parent.name for p in written})
    print(f"wrote {len(written)} meta tables for {len(tasks)} tasks into {args.out}: {', '.join(tasks)}")


def _portfolio(args: argparse.Namespace) -> None:
    from metapb2_core.budgets import get_budget
    from metapb2_core.envs import get_task
    from metapb2_core.portfolio import build_portfolios
    from metapb2_core.quirks import Quirks
    from metapb2_core.space import SEARCH_SPACE

    for t in [*args.tasks, *args.targets]:
        get_task(t)
    paths = build_portfolios(
        args.tasks,
        args.targets,
        get_budget(args.budget, get_task(args.targets[0]).family),
        SEARCH_SPACE,
        args.out,
        tuple(args.seeds),
        Quirks.from_flag(args.faithful),
        args.configs,
        args.intervals,
        args.best,
        args.size,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    for target, path in paths.items():
        print(f"{target}: {path}")


def _report(args: argparse.Namespace) -> None:
    import warnings

    from metapb2_core.evaluation import IncompleteGridWarning, load_runs
    from metapb2_core.evaluation.report import format_report, write_report
    from metapb2_core.evaluation.study_ranking import rank_study

    if not 0.0 < args.alpha < 1.0:
        raise MetaPB2Error(f"--alpha must lie in (0, 1), got {args.alpha:g}")
    runs = load_runs(args.runs, None if args.role == "all" else args.role)
    points = runs.points
    if args.out:
        out = args.out
    elif args.runs.suffix == ".duckdb":
        out = args.runs.with_name(f"{args.runs.stem}_report")
    else:
        out = args.runs / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteGridWarning)  # the report prints the grid check itself
        ranked = rank_study(points, None, runs.failed, runs.perturbations, args.alpha)
    print(format_report(ranked))
    written = write_report(ranked.evaluation, points, out, ranked)
    print(f"wrote {len(written)} files (plots and tables) into {out}")


def _import_tune(args: argparse.Namespace) -> None:
    import json

    from metapb2_core.checks import failure_summary
    from metapb2_core.space import SearchSpace
    from metapb2_core.store import write_record
    from metapb2_core.store.files import check_writable_dir
    from metapb2_core.tune_import import describe, import_tune_experiment

    text = Path(args.space).read_text() if Path(args.space).is_file() else args.space
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise MetaPB2Error(f"--space: not JSON nor a JSON file ({e})") from None
    check_writable_dir(args.out)
    record = import_tune_experiment(
        args.experiment,
        SearchSpace.from_dict(spec),
        args.task,
        metric=args.metric,
        mode=args.mode,
        time_attr=args.time_attr,
        seed=args.seed,
        method=args.method,
    )
    write_record(record, args.out)
    d = describe(record)
    print(
        f"{d['run_id']}: {d['members']} trials, {d['results']} results, {d['exploits']} configuration "
        f"changes, checks {d['status']}; wrote it into {args.out}"
    )
    if record.meta["status"] == "failed":
        raise FailedChecksError(f"{d['run_id']} failed its checks: {failure_summary(record.meta)}")


def _study_report(args: argparse.Namespace) -> None:
    from metapb2_core.study_report import write_study_report

    print(f"wrote {write_study_report(args.root, args.allow_mixed_code, args.runs)}")


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "list":
            print("\n".join(_list(args.what)))
        elif args.command == "meta":
            _meta(args)
        elif args.command == "portfolio":
            _portfolio(args)
        elif args.command == "report":
            _report(args)
        elif args.command == "study-report":
            _study_report(args)
        elif args.command == "import-tune":
            _import_tune(args)
        else:
            _run(args)
    except FailedChecksError as e:
        print(f"metapb2: error: {e}", file=sys.stderr)
        return 1
    except MetaPB2Error as e:
        print(f"metapb2: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        then = "the same command continues from the last completed interval" if args.command == "run" else ""
        print(f"metapb2: interrupted{'; ' + then if then else ''}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
