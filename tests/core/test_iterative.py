"""Iterative prune -> finetune: retries a step smaller when accuracy drops too much, resumes after a rerun."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_iterative_retry_and_resume(tmp_path) -> None:
    base = tmp_path / "base.pt"
    assert run_cli("train", "--model", "resnet20", "--data", "synthetic:tiny", "--epochs", "0", "-o", base).returncode == 0
    out = tmp_path / "p.pt"
    args = ["prune", "--model", base, "--data", "synthetic:tiny", "--uniform", "0.5", "--iterations", "2",
            "--finetune-epochs", "1", "--max-drop", "-50", "-o", out, "--json"]  # -50: no step can satisfy it
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("retrying a smaller step") == 2  # max 2 retries, then the schedule finishes
    state = json.loads((tmp_path / "p.pt.work" / "iterative_state.json").read_text())
    fr = [a["fraction"] for a in state["attempts"]]
    assert len(fr) == 6 and fr[1] < fr[0] and fr[2] < fr[1]  # each retry is a smaller step
    acc = [round(a["fraction"], 3) for a in state["accepted"]]
    assert acc == [0.167, 0.333, 0.667, 1.0]  # the smallest retry, then the rest of the schedule
    assert not state["accepted"][-1]["within_max_drop"] and state["gave_up"]
    assert (tmp_path / "p.pt.work" / "best.pt").is_file()
    r2 = run_cli(*args)  # rerun: everything finished, nothing is finetuned again
    assert r2.returncode == 0, r2.stderr
    assert "resuming after iteration 4" in r2.stderr and "epoch 1/1" not in r2.stderr
    assert r2.json()["flops_after"] == r.json()["flops_after"]
