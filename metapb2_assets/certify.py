"""Certify that this code computes what an earlier commit's code computed, asset by asset.

``python -m metapb2_assets.certify --against COMMIT`` runs a small reference study twice on this
machine, once with the code of COMMIT (a temporary git worktree) and once with this code, each in
a fresh study root through the main command, so every asset runs its real path (candidates,
matrix, portfolio, meta runs, every method's evaluation, meta-data read from the catalog). Then it
compares, per asset, every record value for value (points and perturbations without wall times;
the diagnostics keys the old code wrote; final configurations and best return) and the exported
tables. An asset whose records are all equal gets a link from its code version at COMMIT to its
version here in ``metapb2_core/code_equivalence.json``; staleness then treats both as one. An
asset whose records differ gets nothing: its old records stay stale, as they should.

The reference study runs in both quirk modes at the ``demo`` budget (five intervals, so every
method does its real work). A link is evidence for the reference study on this machine, not a
proof for every task and budget: the ledger keeps what was compared. A change known to alter an
asset's records on other data must not be linked: ``--exclude ASSET …`` (the faithful meta-data
grouping of Q39, for one, gives the same tables on the reference study's five intervals and other
tables in the committed study's fifteen).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from metapb2_core.backfill import PORTFOLIO_MODULE, RANKS_MODULE, asset_code_version
from metapb2_core.code_equivalence import LEDGER, Link, write_links
from metapb2_core.provenance import REPO, _git, code_digest
from metapb2_core.run import method_code_version
from metapb2_core.xla_setup import host_cpu, machine_label

REFERENCE = {
    "family": "classic",
    "tasks": ["cart_pole-earth", "acrobot-earth", "pendulum-earth"],
    "seeds": [0],
    "budget": "demo",
    "candidate_configs": 6,
    "candidate_best": 3,
}
TIMING = {"wall_seconds", "total_run_time"}
MANIFEST_KEYS = ("final_configs", "best_final_eval_return", "status", "failed_checks")
TABLES = ("candidates", "performance_matrix", "portfolios")


def reference_studies(out: Path) -> list[Path]:
    """The reference study's declarations, one per quirk mode."""
    paths = []
    for faithful in (True, False):
        name = f"certify-{'faithful' if faithful else 'fixed'}"
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, **REFERENCE, "faithful": faithful}))
        paths.append(path)
    return paths


def run_side(code: Path, study: Path, home: Path, log: Path) -> None:
    """The main command on ``study`` with the code under ``code`` into ``home``."""
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "PYTHONPATH": str(code), "DAGSTER_HOME": str(home), "RAY_AUTH_MODE": "disabled"}
    env.pop("METAPB2_STUDY_ROOT", None)
    with log.open("w") as f:
        done = subprocess.run(
            [sys.executable, "-m", "metapb2_assets.study", "--study", str(study)],
            cwd=code,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        raise SystemExit(f"certify: the reference study failed with {code}; see {log}")


def _lineage(home: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted((home / "tables" / "lineage").glob("*.parquet"))]
    return pd.concat(frames, ignore_index=True)


def _frame(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    return df.drop(columns=[c for c in TIMING if c in df.columns])


def _diagnostics_equal(old: pd.Series, new: pd.Series) -> bool:
    for a, b in zip(old, new, strict=True):
        da, db = json.loads(a), json.loads(b)
        if any(db.get(k) != v for k, v in da.items()):
            return False
    return True


def record_equal(old_runs: Path, new_runs: Path, run_id: str) -> str | None:
    """None when the two records of ``run_id`` hold the same values, else what differs."""
    for part in ("points", "perturbations"):
        a, b = _frame(old_runs / f"{run_id}.{part}.parquet"), _frame(new_runs / f"{run_id}.{part}.parquet")
        missing = set(a.columns) - set(b.columns)
        if missing:
            return f"{part}: columns {sorted(missing)} gone"
        b = b[list(a.columns)]
        if part == "perturbations" and "diagnostics" in a:
            if not _diagnostics_equal(a["diagnostics"], b["diagnostics"]):
                return "perturbations: diagnostics differ"
            a, b = a.drop(columns="diagnostics"), b.drop(columns="diagnostics")
        if not a.reset_index(drop=True).equals(b.reset_index(drop=True)):
            return f"{part} differ"
    ma = json.loads((old_runs / f"{run_id}.json").read_text())
    mb = json.loads((new_runs / f"{run_id}.json").read_text())
    bad = [k for k in MANIFEST_KEYS if ma.get(k) != mb.get(k)]
    return f"manifest {bad} differ" if bad else None


def compare_homes(old: Path, new: Path) -> dict[str, tuple[int, str | None]]:
    """Per asset name: (records and tables compared, None when all equal else the first difference)."""
    la, lb = _lineage(old), _lineage(new)
    out: dict[str, tuple[int, str | None]] = {}
    for asset, rows in la.groupby("asset_key"):
        name = asset.split("/")[-1]
        theirs = lb[lb["asset_key"] == asset].set_index("partition")
        count, why = 0, None
        for row in rows.itertuples():
            if row.partition not in theirs.index:
                why = why or f"partition {row.partition} not made"
                continue
            ids_a = json.loads(row.output_runs)
            ids_b = json.loads(theirs.loc[row.partition, "output_runs"])
            if ids_a != ids_b:
                why = why or f"{row.partition}: other run ids ({ids_a[:1]} vs {ids_b[:1]})"
                continue
            for rid in ids_a:
                if not (old / "runs" / f"{rid}.json").is_file():
                    continue  # an id without a record of its own (a matrix column): its table counts
                if not (new / "runs" / f"{rid}.json").is_file():
                    why = why or f"{rid}: no record"
                    continue
                diff = record_equal(old / "runs", new / "runs", rid)
                count += 1
                why = why or (f"{rid}: {diff}" if diff else None)
        out[name] = (count, why)
    for table in TABLES:  # the portfolio steps' tables: equal rows, whatever produced them
        a, b = _tables(old, table), _tables(new, table)
        name = {"candidates": "portfolio_candidates", "portfolios": "portfolio"}.get(table, table)
        count, why = out.get(name, (0, None))
        same = a.equals(b[a.columns]) if set(a.columns) <= set(b.columns) and len(a) == len(b) else False
        out[name] = (count + 1, why or (None if same else f"table {table} differs"))
    return out


def _tables(home: Path, table: str) -> pd.DataFrame:
    files = sorted((home / "tables" / table).glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    df = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def certify(against: str, work: Path) -> list[Link]:
    commit = _git("rev-parse", against)
    if commit is None:
        raise SystemExit(f"certify: {against} is not a commit of {REPO}")
    head = _git("rev-parse", "HEAD") or "working tree"
    dirty = bool(_git("status", "--porcelain", "--", "metapb2_core", "metapb2_assets"))
    old_code = work / "old"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old_code), commit],
                   check=True, capture_output=True)  # fmt: skip
    links, reference = [], []
    try:
        for study in reference_studies(work):
            sides = {}
            for side, code in (("old", old_code), ("new", REPO)):
                start = time.perf_counter()
                run_side(code, study, work / study.stem / side, work / f"{study.stem}-{side}.log")
                sides[side] = time.perf_counter() - start
                print(f"{study.stem}: {side} code ({commit[:10] if side == 'old' else 'this'}) "
                      f"in {sides[side]:.0f} s", flush=True)  # fmt: skip
            reference.append(compare_homes(work / study.stem / "old", work / study.stem / "new"))
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_code)], check=False)
    machine = machine_label({**host_cpu(), "backend": "cpu"})
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    names = sorted(set().union(*(r.keys() for r in reference)))
    print(f"\n{'asset':28s} {'compared':>8s}  verdict")
    for name in names:
        results = [r.get(name, (0, "not in this mode's study")) for r in reference]
        count = sum(c for c, _ in results)
        why = next((w for _, w in results if w), None)
        old_v = asset_code_version(f"classic/{name}", commit)
        new_v = current_version(name)
        print(f"{name:28s} {count:8d}  {'equal' if why is None else why}")
        if why is None and count and old_v != new_v:
            study_words = f"{REFERENCE['tasks']} × seed 0 at {REFERENCE['budget']}, faithful and fixed"
            links.append(
                Link(
                    name,
                    old_v,
                    new_v,
                    commit,
                    head + (" + uncommitted changes" if dirty else ""),
                    count,
                    study_words,
                    machine,
                    when,
                )  # fmt: skip
            )
    return links


def current_version(name: str) -> str:
    """An asset's code version in this working tree (uncommitted changes included), as
    ``backfill.asset_code_version`` gives it for a commit."""
    if name.startswith("evaluation_"):
        return method_code_version(name.removeprefix("evaluation_"))
    if name == "meta_runs":
        return method_code_version("pb2")
    return code_digest(RANKS_MODULE if name == "method_ranks" else PORTFOLIO_MODULE)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m metapb2_assets.certify", description=__doc__)
    p.add_argument("--against", required=True, help="the commit whose code made the records to carry over")
    p.add_argument("--keep", action="store_true", help="keep the reference studies' folders")
    p.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="ASSET",
        help="assets never to link although their reference records are equal: a change known to alter "
        "their records elsewhere (the reference study is small; equal there is not equal everywhere)",
    )
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="metapb2-certify-"))
    try:
        links = certify(args.against, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    skipped = [link.asset for link in links if link.asset in args.exclude]
    links = [link for link in links if link.asset not in args.exclude]
    if skipped:
        print(f"\nnot linked (--exclude): {', '.join(skipped)}")
    if links:
        write_links(links)
        print(f"\n{len(links)} link(s) written to {LEDGER}")
    else:
        print("\nno new link: nothing was equal, or the versions were already the same")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
