"""Provenance for a study's records older than the provenance fields, inferred from git history.

A record made before manifests carried ``provenance`` gets one marked ``inferred``: its commit is
the last commit of the repository before the run was published (its lineage row's time), the
tree's state then is unknown (``dirty`` None), its code version is the digest of the source that
computes it at that commit (``provenance.run_code_digest`` on the commit's tree), and its numerics
class follows the CPU it names. Paths of another machine (``meta_source``, ``portfolio_source``)
become portable. Lineage rows get the same code versions, so staleness compares like with like.
Records that already carry provenance are left as they are: running it twice changes nothing.

``python -m metapb2_core.backfill ROOT`` rewrites the study root's manifests and exported lineage.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

from metapb2_core.methods import get_method
from metapb2_core.provenance import (
    SourceTree,
    _git,
    code_digest,
    portable_source,
    record_provenance,
    run_code_digest,
)
from metapb2_core.store.records import dumps_strict, read_manifest
from metapb2_core.store.staleness import SETTINGS_MARK
from metapb2_core.store.table_files import TABLES_DIR

PORTFOLIO_MODULE = "metapb2_core.portfolio"
RANKS_MODULE = "metapb2_core.evaluation.evaluate"


class History:
    """The repository's commits by time, and the digest of an asset's code at each."""

    def __init__(self) -> None:
        log = _git("log", "--format=%H %ct", "HEAD") or ""
        pairs = sorted((int(t), h) for h, t in (line.split() for line in log.splitlines() if line))
        self.times = [t for t, _ in pairs]
        self.commits = [h for _, h in pairs]

    def before(self, when: pd.Timestamp) -> str | None:
        """The last commit at or before ``when`` (UTC)."""
        ts = pd.Timestamp(when)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
        i = bisect.bisect_right(self.times, int(ts.timestamp()))
        return self.commits[i - 1] if i else None


def asset_code_version(asset_key: str, commit: str) -> str:
    """The digest of an asset's code at ``commit``, as the assets compute it today."""
    tree = SourceTree(commit)
    name = asset_key.split("/")[-1]
    if name.startswith("evaluation_"):
        return run_code_digest(get_method(name.removeprefix("evaluation_")).__module__, tree=tree)
    if name == "meta_runs":
        return run_code_digest(get_method("pb2").__module__, tree=tree)
    if name == "method_ranks":
        return code_digest(RANKS_MODULE, tree=tree)
    return code_digest(PORTFOLIO_MODULE, tree=tree)


def _constraints_at(commit: str) -> str | None:
    text = _git("show", f"{commit}:constraints.txt", strip=False)
    return hashlib.sha256(text.encode()).hexdigest() if text is not None else None


def inferred_provenance(manifest: dict, commit: str, published: pd.Timestamp) -> dict:
    """The ``provenance`` block of an old record published at ``published`` after ``commit``."""
    version = run_code_digest(get_method(manifest["method"]).__module__, tree=SourceTree(commit))
    return {
        "inferred": True,
        "inferred_from": "git history: the last commit before the run was published "
        f"({published:%Y-%m-%d %H:%M} UTC)",
        "code_version": version,
        "git": {"commit": commit, "dirty": None},
        "packages": {"jax": manifest.get("jax_version")},
        "constraints_sha256": _constraints_at(commit),
        "numerics": record_provenance(manifest)["numerics"],
    }


def _published(root: Path) -> tuple[pd.DataFrame, dict[str, tuple[pd.Timestamp, str]]]:
    """Every exported lineage row, and run id → (when the row that made it landed, its asset key)."""
    frames = [pd.read_parquet(p) for p in sorted((root / TABLES_DIR / "lineage").glob("*.parquet"))]
    lineage = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    made: dict[str, tuple[pd.Timestamp, str]] = {}
    for row in lineage.itertuples():
        for rid in json.loads(row.output_runs):
            made[rid] = (pd.Timestamp(row.materialized_at), row.asset_key)
    return lineage, made


def backfill_manifests(root: Path, history: History) -> int:
    """Give every published record without provenance an inferred one; returns how many."""
    _, made = _published(root)
    changed = 0
    for path in sorted((root / "runs").glob("*.json")):
        manifest = read_manifest(path)
        rid = manifest["run_id"]
        if "provenance" in manifest or rid not in made:
            continue
        published, _ = made[rid]
        commit = history.before(published)
        if commit is None:
            continue
        block = inferred_provenance(manifest, commit, published)
        manifest["provenance"] = block
        manifest["code_version"] = block["code_version"]
        manifest["meta_source"] = portable_source(manifest.get("meta_source"))
        manifest["portfolio_source"] = portable_source(manifest.get("portfolio_source"))
        files = manifest.pop("record_files")  # the manifest's last key, as write_record writes it
        manifest["record_files"] = files
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(dumps_strict(manifest, indent=2))
        tmp.replace(path)
        changed += 1
    return changed


def backfill_lineage(root: Path, history: History) -> int:
    """Rewrite the code part of exported lineage rows made under the old version scheme (the
    package version and a hash of three modules' text) as the digest at their inferred commit."""
    changed = 0
    for path in sorted((root / TABLES_DIR / "lineage").glob("*.parquet")):
        rows = pd.read_parquet(path)
        old = rows["code_version"].str.startswith("0.1.0")
        if not old.any():
            continue
        versions = []
        for row, is_old in zip(rows.itertuples(), old, strict=True):
            if not is_old:
                versions.append(row.code_version)
                continue
            settings = row.code_version.partition(SETTINGS_MARK)[2]
            digest = asset_code_version(row.asset_key, history.before(pd.Timestamp(row.materialized_at)))
            versions.append(f"{digest}{SETTINGS_MARK}{settings}" if settings else digest)
        rows["code_version"] = versions
        tmp = path.with_name(f".{path.name}.tmp")
        rows.to_parquet(tmp, index=False)
        tmp.replace(path)
        changed += int(old.sum())
    return changed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m metapb2_core.backfill STUDY_ROOT", file=sys.stderr)
        return 2
    root, history = Path(args[0]), History()
    print(f"{backfill_manifests(root, history)} manifests and {backfill_lineage(root, history)} lineage rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
