"""Every report plot rendered from real smoke runs, checked to be a PNG of sensible size, and the
``metapb2 report`` command on those runs and on bad input."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import pytest

from metapb2_core.cli import main
from metapb2_core.evaluation import IncompleteGridWarning, evaluate, load_points
from metapb2_core.evaluation.report import write_report
from metapb2_core.run import RunRequest, execute_run
from metapb2_core.store import write_record

TASKS = ["cart_pole-earth", "mountain_car-earth"]
METHODS = ["pbt", "random_search"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    for task in TASKS:
        for method in METHODS:
            write_record(execute_run(RunRequest(task, method, seed=0, budget="smoke")), out)
    return out


@pytest.fixture(scope="module")
def report(runs_dir) -> tuple[Path, list[Path]]:
    points = load_points(runs_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteGridWarning)
        ev = evaluate(points)
    out = runs_dir / "report"
    return out, write_report(ev, points, out)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_plot_is_a_readable_png(report):
    out, written = report
    expected = {
        "anytime_rank.png",
        "anytime_normalised.png",
        "cd_diagram.png",
        "cd_diagram_final.png",
        "runtime.png",
        *(f"learning_curves/{t}.png" for t in TASKS),
        *(f"schedules/{t}.png" for t in TASKS),
    }
    pngs = {str(p.relative_to(out)) for p in written if p.suffix == ".png"}
    assert pngs == expected
    for name in expected:
        path = out / name
        width, height = png_size(path)
        assert width >= 300 and height >= 300, (name, width, height)
        assert path.stat().st_size > 5_000, name


def test_tables_are_written(report):
    out, _ = report
    assert (out / "rank_table.csv").read_text().startswith("method,final_rank,overall_rank")
    assert "\\begin{tabular}" in (out / "final_table.tex").read_text()
    assert (out / "grid_report.txt").read_text().startswith("complete grid: 2 tasks × 2 methods × 1 seeds")


def test_report_command_prints_ranks_and_writes_plots(runs_dir, tmp_path, capsys):
    assert main(["report", str(runs_dir), "--out", str(tmp_path / "rep")]) == 0
    text = capsys.readouterr().out
    assert "Mean rank over all 2 tasks" in text
    for name in [*METHODS, *TASKS, "Friedman", "complete grid"]:
        assert name in text
    assert (tmp_path / "rep" / "anytime_rank.png").is_file()


def test_report_command_flags_a_missing_run(runs_dir, tmp_path, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in runs_dir.iterdir():  # every record's files but one run's
        if f.is_file() and not f.name.startswith("pbt-mountain_car"):
            (partial / f.name).write_bytes(f.read_bytes())
    assert main(["report", str(partial)]) == 0
    text = capsys.readouterr().out
    assert "missing: pbt has no runs on mountain_car-earth" in text
    assert (partial / "report" / "anytime_rank.png").is_file()


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "no run records"),
        (lambda p: p / "runs.duckdb", "does not exist"),
    ],
)
def test_report_command_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, needle):
    assert main(["report", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("metapb2: error:") and needle in err


def test_report_from_a_duckdb_file_matches_the_folder(runs_dir, tmp_path, capsys):
    import duckdb
    import pandas as pd

    points = load_points(runs_dir)
    db = tmp_path / "runs.duckdb"
    con = duckdb.connect(str(db))
    con.register("points", points)
    con.execute("CREATE TABLE run_points AS SELECT * FROM points")
    con.close()
    from_db = load_points(db)
    assert len(from_db) == len(points)
    pd.testing.assert_frame_equal(evaluate(from_db).summary, evaluate(points).summary)
    assert main(["report", str(db), "--out", str(tmp_path / "rep")]) == 0
    assert "Mean rank over all 2 tasks" in capsys.readouterr().out
    assert (tmp_path / "rep" / "cd_diagram.png").is_file()
