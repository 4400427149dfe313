"""``metapb2 study-report ROOT``: a reproduction study's REPORT.md and figures, regenerated from
the files committed under its root alone (the catalog is rebuilt from them into a temporary
folder), so what the report says is exactly what the records hold."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from metapb2_core.catalog_rebuild import rebuild_catalog
from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation import IncompleteGridWarning
from metapb2_core.evaluation.evaluate import Evaluation
from metapb2_core.evaluation.paper import CLASSIC, PaperResult
from metapb2_core.evaluation.report import write_report
from metapb2_core.evaluation.reproduction import ranked_points, reproduction_markdown, study_ranking
from metapb2_core.study import StudyPaths, family_matrix, load_candidates, run_machines, study_evaluation_runs
from metapb2_core.study_spec import declared_study

PAPER_RESULTS: dict[str, PaperResult] = {"classic": CLASSIC}
REPORT_FILE = "REPORT.md"
FIGURES_DIR = "report"


class StudyEvaluation(NamedTuple):
    evaluation: Evaluation
    points: pd.DataFrame  # what it ranks
    machines: pd.DataFrame  # run_id, method, machine of every ranked run
    matrix: pd.DataFrame | None  # the study's performance matrix (candidates × tasks); None without one
    coverage: pd.DataFrame  # per declared seed: runs planned, passed, failed (reproduction.coverage)


def study_evaluation(root: str | Path) -> StudyEvaluation:
    """The evaluation of the study declared in ``root`` (its complete seeds alone while another is
    midway: ``study_ranking``), the points it ranks, the machines they ran on and the coverage of
    every declared seed, from a catalog rebuilt from its files."""
    root = Path(root)
    spec = declared_study(root)
    if spec is None:
        raise MetaPB2Error(f"{root} declares no study (no study.yaml)")
    with tempfile.TemporaryDirectory(prefix="metapb2-report-") as tmp:
        paths = StudyPaths(root, Path(tmp) / "catalog.duckdb")
        rebuild_catalog(paths)
        found = study_evaluation_runs(paths.catalog(), spec)
        catalog = paths.catalog()
        machines = run_machines(catalog, sorted(set(found.points["run_id"])))
        matrix = None
        if "performance_matrix" in catalog.tables():
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
        ev, cover = study_ranking(found.points, spec, found.failed, found.perturbations)
    ranked = ranked_points(ev, found.points)
    return StudyEvaluation(ev, ranked, machines[machines["run_id"].isin(ranked["run_id"])], matrix, cover)


def write_study_report(root: str | Path) -> Path:
    """Write ``root/REPORT.md`` and the figures and tables under ``root/report``; returns the report."""
    root = Path(root)
    spec = declared_study(root)
    if spec is None:
        raise MetaPB2Error(f"{root} declares no study (no study.yaml)")
    if spec.family not in PAPER_RESULTS:
        known = ", ".join(PAPER_RESULTS)
        raise MetaPB2Error(f"no published {spec.family} result to compare with; known: {known}")
    found = study_evaluation(root)
    write_report(found.evaluation, found.points, root / FIGURES_DIR)
    command = f"metapb2 study-report {root}"
    text = reproduction_markdown(
        found.evaluation,
        spec,
        PAPER_RESULTS[spec.family],
        command,
        found.machines,
        found.matrix,
        found.coverage,
    )
    path = root / REPORT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
