"""How long a fresh clone waits for its catalog: rebuilding a committed study root's DuckDB catalog
from its files (``catalog_rebuild.rebuild_catalog``), with records batched per transaction (the
default, ``BATCH``) and one transaction per record (as before the rebuild was made atomic), on
copies of the same root, in this run. Prints both and their ratio; writes JSON (default
benchmarks/results/catalog_rebuild.json).

Usage: python benchmarks/bench_catalog_rebuild.py [--root results/classic-short]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from metapb2_core import catalog_rebuild  # noqa: E402
from metapb2_core.study import StudyPaths  # noqa: E402

COMMITTED = ("study.yaml", "runs", "tables")


def rebuild_seconds(root: Path, batch: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        copy = Path(tmp) / "root"
        copy.mkdir()
        for name in COMMITTED:
            src = root / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, copy / name)
        catalog_rebuild.BATCH = batch
        start = time.perf_counter()
        rebuilt = catalog_rebuild.rebuild_catalog(StudyPaths(copy, copy / "metapb2.duckdb"))
        return time.perf_counter() - start, rebuilt.runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", type=Path, default=ROOT / "results" / "classic-short")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "catalog_rebuild.json")
    args = p.parse_args(argv)
    batched = catalog_rebuild.BATCH
    one, runs = rebuild_seconds(args.root, 1)
    many, _ = rebuild_seconds(args.root, batched)
    figures = {
        "root": str(args.root.relative_to(ROOT) if args.root.is_relative_to(ROOT) else args.root),
        "runs": runs,
        "seconds_one_record_per_transaction": round(one, 1),
        f"seconds_{batched}_records_per_transaction": round(many, 1),
        "ratio": round(one / many, 2),
    }
    print(json.dumps(figures, indent=2))
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
