"""End to end: with an `ana` workspace, latency-targeted pruning minimises the top-1 drop predicted by the
sensitivity table instead of the lost importance. A real `ana` run writes the table (so its format and model
fingerprint are the real ones); the test then makes one group very sensitive and every other group free to
cut, and checks that the search keeps exactly that group whole while the importance objective cuts it."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(600)
SHAPE = "1,3,64,64"          # resnet20 at 64x64 on the simulated ZCU104: reachable ~875..1097 fps
TARGET = 1000
SENSITIVE = "layer3.0.downsample.0"  # stage-3 residual stream: the importance objective halves it at TARGET


def _prune(cli, model, out, *extra):
    res = cli("prune", "--model", model, "--target-fps", TARGET, "--board", "zcu104",
              "--finetune-epochs", 0, "-o", out, "--json", *extra)
    assert res.returncode == 0, res.stderr
    return res


def test_sensitivity_table_steers_the_width_search(cli, tmp_path):
    from hw_prune.models.io import load_model, save_model

    # one model file for both commands: the table is tied to the weights it was measured on
    model = tmp_path / "r20.pt"
    save_model(load_model("resnet20", None, 10, tuple(int(x) for x in SHAPE.split(","))), model)
    ws = tmp_path / "ws"
    res = cli("ana", "--model", model, "--data", "synthetic:tiny", "--workspace", ws,
              "--ratios", 0.25, 0.5, 0.75, "--val-images", 64, "--bn-batches", 1, "--json")
    assert res.returncode == 0, res.stderr
    path = ws / "ana.json"
    table = json.loads(path.read_text())
    base = float(table["baseline"])
    assert SENSITIVE in table["cells"], sorted(table["cells"])
    for g, cells in table["cells"].items():
        for r, cell in cells.items():  # SENSITIVE loses everything at any ratio; the others lose nothing
            cell["top1"] = 0.0 if g == SENSITIVE else base
    path.write_text(json.dumps(table))

    plain = _prune(cli, model, tmp_path / "plain.pt").json()
    steered_run = _prune(cli, model, tmp_path / "steered.pt", "--workspace", ws)
    steered = steered_run.json()
    assert "widths chosen by predicted top-1 loss" in steered_run.stderr
    full = 64
    assert plain["widths"][SENSITIVE] < full, plain["widths"]        # importance alone cuts it ...
    assert steered["widths"][SENSITIVE] == full, steered["widths"]   # ... the table keeps it whole
    # and the speed still comes from somewhere: both land in the window on the simulated board
    for r in (plain, steered):
        assert TARGET <= r["measured_fps"] <= 1.05 * TARGET, r["measured_fps"]
    assert sum(steered["widths"].values()) < sum(plain["widths"].values())
