"""The issue's acceptance run on --data synthetic with default settings:
train resnet20 -> ana -> prune --ratio 0.5 --iterations 2 (finetuning) -> FLOPs 0.50 +- 0.02, top-1 within 2 points."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_train_ana_prune_ratio_half(tmp_path) -> None:
    base = tmp_path / "base.pt"
    r = run_cli("train", "--model", "resnet20", "--data", "synthetic", "-o", base, "--json")
    assert r.returncode == 0, r.stderr
    baseline = r.json()["top1"]
    assert 80 <= baseline <= 97, baseline  # learnable but not trivially separable

    ws = tmp_path / "ws"
    a = run_cli("ana", "--model", base, "--data", "synthetic", "-w", ws, "--json")
    assert a.returncode == 0, a.stderr
    ad = a.json()
    assert ad["complete"] and ad["groups"] == 12 and len(ad["ratios"]) == 9
    table = json.loads((ws / "ana.json").read_text())
    drops = [table["baseline"] - c["0.9"]["top1"] for c in table["cells"].values()]
    assert max(drops) > 10  # pruning damage is visible on this data
    assert "0.9" in a.stderr and (ws / "ana.png").is_file()

    out = tmp_path / "pruned.pt"
    p = run_cli("prune", "--model", base, "--data", "synthetic", "-w", ws, "--ratio", "0.5", "--iterations", "2",
                "-o", out, "--json")
    assert p.returncode == 0, p.stderr
    d = p.json()
    ratio = d["flops_after"] / d["flops_before"]
    assert abs(ratio - 0.5) <= 0.02, ratio
    assert d["top1"] >= baseline - 2.0, (d["top1"], baseline)
    plan = json.loads((tmp_path / "pruned.plan.json").read_text())
    assert plan["mode"] == "ratio" and plan["extra"]["sensitivity_table"].endswith("ana.json")
    hist = plan["extra"]["history"]
    assert [round(h["fraction"], 3) for h in hist] == [0.667, 1.0]  # large step first, then the smaller one
    st = run_cli("stat", "--model", out, "--json").json()
    assert st["flops"] == d["flops_after"] and st["output_shape"] == [1, 10]
    # the sensitivity table decided the widths: sensitive groups keep more channels than robust ones
    w = {g["name"]: g["width_after"] / g["width_before"] for g in plan["groups"] if g["prunable"]}
    assert w["layer3.0.downsample.0"] > w["layer3.2.conv1"]
