"""``metapb2 study-report ROOT``: a reproduction study's REPORT.md and figures, regenerated from
the files committed under its root alone (the catalog is rebuilt from them into a temporary
folder), so what the report says is exactly what the records hold. It names the run ids it ranks
(``report/ranked_runs.csv``), so a report written while the study runs needs no procedure, and
the commits its records came from: records of more than one commit are refused unless asked for
(``allow_mixed_code``), and then the report says so above everything."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from metapb2_core.catalog_rebuild import rebuild_catalog
from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation import IncompleteGridWarning
from metapb2_core.evaluation.paper import CLASSIC, PaperResult
from metapb2_core.evaluation.plots_inference import plot_performance_profile, plot_rank_intervals
from metapb2_core.evaluation.report import write_report
from metapb2_core.evaluation.reproduction import reproduction_markdown
from metapb2_core.evaluation.study_ranking import RankedStudy, rank_study, ranked_points
from metapb2_core.provenance import record_provenance
from metapb2_core.store import Lineage, read_record
from metapb2_core.store.records import read_manifest, record_paths
from metapb2_core.study import (
    StudyPaths,
    family_matrix,
    load_candidates,
    run_changes,
    run_manifests,
    study_evaluation_runs,
)
from metapb2_core.study_spec import declared_study
from metapb2_core.xla_setup import machine_label

PAPER_RESULTS: dict[str, PaperResult] = {"classic": CLASSIC}
REPORT_FILE = "REPORT.md"
FIGURES_DIR = "report"
RANKED_RUNS = "ranked_runs.csv"


class MixedCodeError(MetaPB2Error):
    """Evaluation records of more than one commit, without ``--allow-mixed-code``."""


class StudyEvaluation(NamedTuple):
    ranked: RankedStudy
    points: pd.DataFrame  # what it ranks
    machines: pd.DataFrame  # run_id, method, machine of every ranked run
    matrix: pd.DataFrame | None  # the study's performance matrix (candidates × tasks); None without one
    provenance: (
        pd.DataFrame
    )  # per record: run_id, method, role, commit, dirty, inferred, code_version, numerics
    digests: dict[str, str]  # run id → SHA-256 of its points file (what the report rests on)

    @property
    def evaluation(self):
        return self.ranked.evaluation

    @property
    def coverage(self) -> pd.DataFrame | None:
        return self.ranked.coverage


def _provenance(manifests: pd.DataFrame) -> pd.DataFrame:
    rows = [{"run_id": r.run_id, "method": r.method, "role": r.role, **record_provenance(r.manifest)}
            for r in manifests.itertuples()]  # fmt: skip
    return pd.DataFrame(rows, columns=["run_id", "method", "role", "commit", "dirty", "inferred",
                                       "code_version", "numerics"])  # fmt: skip


def read_ranked_runs(path: str | Path) -> list[str]:
    """The run ids a report ranked (its ``ranked_runs.csv``)."""
    try:
        return pd.read_csv(path)["run_id"].tolist()
    except (OSError, KeyError, pd.errors.ParserError) as e:
        raise MetaPB2Error(f"{path} is not a report's list of ranked runs ({e})") from None


def study_evaluation(root: str | Path, run_ids: list[str] | None = None) -> StudyEvaluation:
    """The ranking of the study declared in ``root`` (``study_ranking.rank_study``), the points it
    ranks, the machines and provenance of its records, from a catalog rebuilt from its files;
    ``run_ids``: rank exactly these evaluation runs (each must be among the records)."""
    root = Path(root)
    spec = declared_study(root)
    if spec is None:
        raise MetaPB2Error(f"{root} declares no study (no study.yaml)")
    with tempfile.TemporaryDirectory(prefix="metapb2-report-") as tmp:
        paths = StudyPaths(root, Path(tmp) / "catalog.duckdb")
        rebuild_catalog(paths)
        catalog = paths.catalog()
        if run_ids is not None:
            _add_superseded(catalog, paths, run_ids)
        found = study_evaluation_runs(catalog, spec)
        if run_ids is not None:
            found = _only(found, run_ids, root)
        manifests = run_manifests(catalog, catalog.run_ids())
        matrix = None
        if catalog.has("performance_matrix"):
            cands = [c.id for c in load_candidates(catalog, spec.family)]
            matrix = family_matrix(catalog, spec.family, cands)
    if found.points.empty and found.failed.empty:
        planned = len(spec.tasks) * len(spec.seeds) * len(spec.methods)
        raise MetaPB2Error(
            f"{root}: no evaluation run of study {spec.name!r} has finished yet (0 of {planned} planned); "
            "nothing to report"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteGridWarning)  # the report states the grid check
        ranked = rank_study(found.points, spec, found.failed, found.perturbations)
    points = ranked_points(ranked.evaluation, found.points)
    ids = set(points["run_id"])
    machines = manifests[manifests["run_id"].isin(ids)][["run_id", "method", "manifest"]].copy()
    machines["machine"] = machines.pop("manifest").map(lambda m: machine_label(m.get("machine")))
    # the catalog keeps manifests without their file digests: read them from the records
    digests = {
        rid: read_manifest(record_paths(paths.runs, rid)["meta"])["record_files"]["points"]["sha256"]
        for rid in ids
    }
    return StudyEvaluation(ranked, points, machines, matrix, _provenance(manifests), digests)


def _add_superseded(catalog, paths: StudyPaths, run_ids: list[str]) -> None:
    """Listed runs whose partition has since been run again (a study midway a re-run keeps the
    records its last report ranked until the report is written anew): their records enter the
    report's catalog as they were published, each under a partition of its own, so a snapshot
    ranks exactly what it listed."""
    have = set(catalog.run_ids())
    for rid in sorted(set(run_ids) - have):
        if not record_paths(paths.runs, rid)["meta"].is_file():
            continue  # _only names what is missing
        record = read_record(paths.runs, rid)
        m = record.meta
        lin = Lineage(f"superseded/{m['method']}", rid, "superseded", str(m.get("code_version")))
        catalog.write(run_changes(record, m.get("role", "evaluation"), lin, m.get("status", "passed")))


def _only(found, run_ids: list[str], root: Path):
    have = set(found.points["run_id"]) | set(found.failed["run_id"])
    missing = sorted(set(run_ids) - have)
    if missing:
        raise MetaPB2Error(
            f"{root}: {len(missing)} listed run(s) have no passed or failed evaluation record, "
            f"e.g. {missing[0]}"
        )
    keep = set(run_ids)
    return type(found)(
        found.points[found.points["run_id"].isin(keep)],
        found.failed[found.failed["run_id"].isin(keep)],
        found.perturbations,
    )


def commits_of(provenance: pd.DataFrame, role: str = "evaluation") -> pd.Series:
    """Records of ``role`` per commit ("not recorded" for records without one)."""
    rows = provenance[provenance["role"] == role]
    return rows["commit"].fillna("not recorded").value_counts().sort_index()


def check_one_commit(root: Path, provenance: pd.DataFrame, ranked: set[str], allow: bool) -> pd.Series:
    """The commits of the ranked evaluation records; more than one raises ``MixedCodeError``
    naming them unless ``allow``."""
    commits = commits_of(provenance[provenance["run_id"].isin(ranked)])
    if len(commits) > 1 and not allow:
        most = commits.sort_values(ascending=False)
        named = ", ".join(f"{_short(c)} ({n})" for c, n in most.head(5).items())
        named += f" and {len(most) - 5} more" if len(most) > 5 else ""
        raise MixedCodeError(
            f"{root}: the {int(commits.sum())} ranked evaluation records come from {len(commits)} commits "
            f"({named}); re-run them at one commit, or pass --allow-mixed-code to rank them anyway"
        )
    return commits


def _short(commit: str) -> str:
    return commit[:10] if commit != "not recorded" else commit


def provenance_md(provenance: pd.DataFrame, ranked: set[str], allowed_mixed: bool) -> list[str]:
    """The *Provenance* section; its first line is the mixed-code warning when mixed code was ranked."""
    rows = provenance.copy()
    rows["ranked"] = rows["run_id"].isin(ranked)
    rows["kind"] = rows["role"].where(
        rows["ranked"] | (rows["role"] != "evaluation"), "evaluation (not ranked)"
    )
    rows["commit"] = rows["commit"].fillna("not recorded")

    def listed(values: pd.Series) -> str:
        counts = values.value_counts()
        return "; ".join(f"{v} ×{n}" for v, n in counts.sort_index().items())

    table = rows.groupby(["method", "kind"]).agg(
        records=("run_id", "size"),
        commits=("commit", "nunique"),
        inferred=("inferred", "sum"),
        code_versions=("code_version", listed),
        numerics=("numerics", listed),
    )
    table = table.rename(columns={"code_versions": "code versions", "inferred": "provenance inferred"})
    commits = commits_of(provenance[provenance["run_id"].isin(ranked)])
    evaluations = rows[rows["ranked"]]
    per_method = evaluations.groupby("method")["code_version"].nunique()
    one_each = bool(len(per_method)) and bool((per_method == 1).all())
    lines = []
    if len(commits) > 1 and allowed_mixed:
        lines += [
            f"> **Mixed code.** The {int(commits.sum())} ranked evaluation records come from "
            f"{len(commits)} commits; this report was written with `--allow-mixed-code`. "
            + (
                "The code that computes them is one version per method (the digest of its source, "
                "table in *Provenance*), so what differs between those commits is code no ranked "
                "record depends on."
                if one_each
                else f"{int((per_method > 1).sum())} method(s) have records of more than one code "
                "version (table in *Provenance*)."
            ),
            "",
        ]
    lines += [
        "Every record's manifest names the code that made it (git commit, whether the tree was dirty, "
        "a digest of the source that computes it, package versions, the constraints' hash) and the "
        "numerics class of the machine (the XLA flags: on a CPU with AVX-512 the platform compiles for "
        "512-bit vectors, which rounds float32 sums in another order, so one request gives "
        "bit-identical records only within one class). Records older than these fields carry them "
        "inferred from git history: the last commit before the run was published, the tree's state "
        "unknown. One row per record: `report/provenance.csv`.",
        "",
        table.to_markdown(),
    ]
    return lines


def write_study_report(
    root: str | Path, allow_mixed_code: bool = False, runs: str | Path | None = None
) -> Path:
    """Write ``root/REPORT.md`` and the figures and tables under ``root/report``; returns the report.
    ``runs``: a ranked_runs.csv whose run ids alone are ranked (a snapshot of a study midway)."""
    root = Path(root)
    spec = declared_study(root)
    if spec is None:
        raise MetaPB2Error(f"{root} declares no study (no study.yaml)")
    if spec.family not in PAPER_RESULTS:
        known = ", ".join(PAPER_RESULTS)
        raise MetaPB2Error(f"no published {spec.family} result to compare with; known: {known}")
    found = study_evaluation(root, read_ranked_runs(runs) if runs is not None else None)
    ranked = set(found.points["run_id"])
    check_one_commit(root, found.provenance, ranked, allow_mixed_code)
    out = root / FIGURES_DIR
    write_report(found.evaluation, found.points, out, found.ranked)
    plot_rank_intervals(found.ranked.inference, out / "rank_intervals.png")
    plot_performance_profile(found.ranked.inference, out / "performance_profile.png")
    listed = found.provenance[found.provenance["run_id"].isin(ranked)].sort_values("run_id")
    listed = listed.assign(points_sha256=listed["run_id"].map(found.digests))
    listed[["run_id", "method", "commit", "code_version", "points_sha256"]].to_csv(
        out / RANKED_RUNS, index=False
    )
    command = f"metapb2 study-report {root}" + (" --allow-mixed-code" if allow_mixed_code else "")
    text = reproduction_markdown(
        found.ranked,
        spec,
        PAPER_RESULTS[spec.family],
        command,
        found.machines,
        found.matrix,
        provenance_md(found.provenance, ranked, allow_mixed_code),
    )
    path = root / REPORT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
