"""Bad input: one line, exit 2, no traceback, nothing overwritten."""

from __future__ import annotations

import pytest

from tests.conftest import assert_user_error, run_cli


def test_unknown_model_lists_builtins() -> None:
    assert_user_error(run_cli("stat", "--model", "resnet21"), "unknown model", "resnet20", "mobilenetv2")


def test_missing_and_corrupt_files(tmp_path) -> None:
    assert_user_error(run_cli("stat", "--model", tmp_path / "nope.pt"), "does not exist")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    assert_user_error(run_cli("stat", "--model", bad), "cannot read model file")
    badplan = tmp_path / "plan.json"
    badplan.write_text("{broken")
    assert_user_error(run_cli("transform", "--model", "resnet20", "--plan", badplan, "-o", tmp_path / "x.pt"),
                      "not valid JSON")
    assert_user_error(run_cli("prune", "--model", "resnet20", "--plan", tmp_path / "missing.json",
                              "-o", tmp_path / "x.pt"), "does not exist")
    assert not (tmp_path / "x.pt").exists()


def test_shape_mismatch() -> None:
    assert_user_error(run_cli("stat", "--model", "resnet20", "--input-shape", "1,1,32,32"), "input shape")
    assert_user_error(run_cli("stat", "--model", "resnet20", "--input-shape", "1,3,x,32"), "input-shape")


@pytest.mark.parametrize("flag,value", [("--ratio", "1.5"), ("--ratio", "0"), ("--uniform", "-0.2"),
                                        ("--uniform", "1")])
def test_ratio_outside_open_interval(flag: str, value: str, tmp_path) -> None:
    assert_user_error(run_cli("prune", "--model", "resnet20", flag, value, "-o", tmp_path / "o.pt"), "(0, 1)")


def test_unwritable_output_and_nothing_overwritten(tmp_path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")  # a file where a directory should be: unwritable even for root
    res = run_cli("prune", "--model", "resnet20", "--uniform", "0.5", "-o", blocker / "model.pt")
    assert_user_error(res, "writable")
    assert blocker.read_text() == "x"
    res = run_cli("train", "--model", "resnet20", "--data", "synthetic:tiny", "-o", tmp_path)
    assert_user_error(res, "is a directory")
    # a model file that exists but is not a model: error, and the -o target keeps its content
    out = tmp_path / "out.pt"
    out.write_text("old")
    assert_user_error(run_cli("finetune", "--model", tmp_path / "nofile.pt", "--data", "synthetic:tiny",
                              "-o", out), "does not exist")
    assert out.read_text() == "old"


def test_data_and_mode_errors(tmp_path) -> None:
    assert_user_error(run_cli("train", "--model", "resnet20", "--data", "synthetic:nope", "-o", tmp_path / "m.pt"),
                      "unknown synthetic variant")
    assert_user_error(run_cli("train", "--model", "resnet20", "--data", tmp_path / "nodir", "-o", tmp_path / "m.pt"),
                      "neither")
    (tmp_path / "empty").mkdir()
    assert_user_error(run_cli("train", "--model", "resnet20", "--data", tmp_path / "empty", "-o", tmp_path / "m.pt"),
                      "no images")
    assert_user_error(run_cli("prune", "--model", "resnet20", "-o", tmp_path / "m.pt"), "exactly one")
    assert_user_error(run_cli("prune", "--model", "resnet20", "--threshold", "1", "-o", tmp_path / "m.pt"),
                      "sensitivity table")
    assert_user_error(run_cli("prune", "--model", "resnet20", "--uniform", "0.5", "--finetune-epochs", "1",
                              "-o", tmp_path / "m.pt"), "--data")
    assert_user_error(run_cli("prune", "--model", "resnet20", "--uniform", "0.5", "--exclude", "layer9",
                              "-o", tmp_path / "m.pt"), "no such module")
    assert not (tmp_path / "m.pt").exists()


def test_plan_for_another_model(tmp_path) -> None:
    r = run_cli("prune", "--model", "vgg-small", "--uniform", "0.5", "-o", tmp_path / "v.pt")
    assert r.returncode == 0, r.stderr
    assert_user_error(run_cli("transform", "--model", "resnet20", "--plan", tmp_path / "v.plan.json",
                              "-o", tmp_path / "t.pt"), "does not have")
    assert not (tmp_path / "t.pt").exists()
