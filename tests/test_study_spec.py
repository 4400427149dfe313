"""A declared study: read, checked and written once; the main command's flags change the declaration;
the definitions partition by it."""

from __future__ import annotations

import os

import pytest

from metapb2_core.errors import MetaPB2Error
from metapb2_core.study_spec import (
    DEMO,
    StudySpec,
    StudySpecError,
    declared_study,
    load_study,
    study_file,
    write_study,
)


def test_round_trip_through_yaml(tmp_path):
    spec = DEMO.with_changes(seeds=[0, 1, 2], faithful=True, name="classic-short", budget="short")
    path = write_study(spec, study_file(tmp_path))
    assert load_study(path) == spec and declared_study(tmp_path) == spec
    assert declared_study(tmp_path / "elsewhere") is None
    assert not list(tmp_path.glob(".study-*"))  # no temp file left behind


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tasks": ["cart_pole-earth", "hopper-earth"]}, "'hopper-earth' is not of the 'classic' family"),
        ({"tasks": ["cart_pole-mars"]}, "cart_pole-mars"),
        ({"seeds": [0, 0]}, "a seed is listed twice"),
        ({"seeds": [-1]}, "seed -1 is not an integer in [0, 2^32)"),
        ({"seeds": [True]}, "seed True is not an integer"),
        ({"budget": "huge"}, "huge"),
        ({"methods": ["pbt", "nope"]}, "nope"),
        ({"tasks": ["cart_pole-earth", "cart_pole-venus"]}, "needs tasks of at least two environments"),
        ({"name": "a b"}, "study name 'a b'"),
        ({"candidate_best": 40}, "candidate_best must be in [1, candidate_configs = 30], got 40"),
    ],
)
def test_a_bad_declaration_is_a_one_line_error_naming_the_setting(change, message):
    with pytest.raises(MetaPB2Error) as e:
        DEMO.with_changes(**change)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_bad_file_names_itself_and_the_setting(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("name: x\nfamily: classic\ntasks: cart_pole-earth\nseeds: [0]\nbudget: demo\n")
    with pytest.raises(StudySpecError, match=r"study.yaml: tasks must be a list"):
        load_study(path)
    path.write_text("name: x\nfamily: classic\nseeds: [0]\nbudget: demo\nseed: 3\n")
    with pytest.raises(StudySpecError, match=r"unknown setting\(s\) \['seed'\]"):
        load_study(path)
    path.write_text("name: [x\n")
    with pytest.raises(StudySpecError, match="not valid YAML"):
        load_study(path)


GOOD = "name: x\nfamily: classic\ntasks: [cart_pole-earth, acrobot-earth]\nseeds: [0]\nbudget: demo\n"


@pytest.mark.parametrize(
    "extra, message",
    [
        ('candidate_configs: "30"\n', "candidate_configs must be an integer, got '30'"),
        ('faithful: "false"\n', "faithful must be true or false (unquoted), got 'false'"),
        ("candidate_best: 2.5\n", "candidate_best must be an integer, got 2.5"),
        ("method: [pbt]\n", "unknown setting(s) ['method'] ('method': did you mean 'methods'?)"),
        ("name2: [x\n", "not valid YAML at line"),
    ],
)
def test_a_study_file_with_a_wrong_type_or_key_is_one_line_naming_file_and_field(tmp_path, extra, message):
    path = tmp_path / "study.yaml"
    path.write_text(GOOD + extra)
    with pytest.raises(StudySpecError) as e:
        load_study(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_tasks_as_a_list_of_lists_is_refused(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(GOOD.replace("tasks: [cart_pole-earth, acrobot-earth]", "tasks: [[cart_pole-earth]]"))
    with pytest.raises(StudySpecError, match=r"each of tasks must be a string, got \['cart_pole-earth'\]"):
        load_study(path)


def test_a_bad_root_declaration_stops_the_main_command_in_one_line_and_study_replaces_it(tmp_path):
    import subprocess
    import sys

    root = tmp_path / "root"
    root.mkdir()
    (root / "study.yaml").write_text(GOOD + 'faithful: "false"\n')
    env = {**os.environ, "DAGSTER_HOME": str(root)}
    env.pop("METAPB2_STUDY_ROOT", None)
    cmd = [sys.executable, "-m", "metapb2_assets.study"]
    bad = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert bad.stderr.strip().splitlines()[-1].startswith(f"metapb2-study: error: {root / 'study.yaml'}")
    good = tmp_path / "good.yaml"
    good.write_text(GOOD + "methods: [nope]\n")  # a bad --study is refused too, and names its own file
    out = subprocess.run([*cmd, "--study", str(good)], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and str(good) in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]
    assert "replacing the root's unreadable declaration" in out.stderr


def test_the_open_layout_offers_a_whole_family():
    spec = StudySpec.open_layout("classic")
    assert len(spec.tasks) == 20 and spec.seeds == tuple(range(10)) and not spec.declared


def test_the_main_commands_flags_change_the_declaration(tmp_path):
    from metapb2_assets.study import _parser, declare

    said = []
    spec = declare(_parser().parse_args([]), tmp_path, said.append)
    assert spec == DEMO and declared_study(tmp_path) == DEMO and len(said) == 1
    spec = declare(_parser().parse_args([]), tmp_path, said.append)
    assert spec == DEMO and len(said) == 1  # nothing changed: nothing written, nothing said
    spec = declare(_parser().parse_args(["--seeds", "0", "1"]), tmp_path, said.append)
    assert spec.seeds == (0, 1) and declared_study(tmp_path).seeds == (0, 1)
    assert said[-1].startswith("declared study 'demo': classic, 3 tasks × 2 seeds × 8 methods")


def test_definitions_partition_by_the_declared_study(tmp_path):
    from metapb2_assets.definitions import build_definitions
    from metapb2_assets.resources import StudyStore

    spec = DEMO.with_changes(seeds=[0, 4])
    write_study(spec, study_file(tmp_path))
    defs = build_definitions(store=StudyStore(root=str(tmp_path)))
    ev = next(a for a in defs.assets if a.key.path == ["classic", "evaluation_pbt"])
    keys = set(ev.partitions_def.get_partition_keys())
    assert keys == {f"{s}|{t}" for t in DEMO.tasks for s in (0, 4)}
    assert not any(a.key.path[0] == "brax" for a in defs.assets)  # the study's family only
    job = defs.resolve_job_def("classic_evaluation_pbt")
    assert job.tags["metapb2/study"] == "demo" and job.tags["metapb2/method"] == "pbt"
    # the stage job's launch dialog opens with the study's settings written out
    config = job.get_run_config_for_partition_key("4|cart_pole-earth")
    assert config["ops"]["classic__evaluation_pbt"]["config"] == {"budget": "demo", "faithful": False}
    # the launch dialog's default budget is the study's
    fields = ev.op.config_schema.config_type.fields
    assert fields["budget"].default_value == "demo"


def test_the_progress_note_says_done_of_total_time_so_far_and_time_left():
    from metapb2_assets.study_runner import progress_note

    assert progress_note(3, 24, 250.0) == "3 of 24; 4 min 10 s so far, about 29 min 10 s left"
    assert progress_note(1, 171, 300.0) == "1 of 171; 5 min 0 s so far, about 14 h 10 min left"
    assert progress_note(24, 24, 59.6) == "24 of 24; 1 min 0 s"
