"""prune --uniform / --ratio / --plan, transform and stat through the CLI (no data needed)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hw_prune.models import build_builtin
from hw_prune.models.io import load_model
from tests.conftest import run_cli


def test_stat_flops_equal_torch_counter() -> None:
    res = run_cli("stat", "--model", "mobilenetv2-small", "--json")
    assert res.returncode == 0, res.stderr
    d = res.json()
    m = build_builtin("mobilenetv2-small").eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.zeros(1, 3, 32, 32))
    assert d["flops"] == fc.get_total_flops()
    assert d["params"] == sum(p.numel() for p in m.parameters())
    assert d["output_shape"] == [1, 10]
    assert sum(layer["flops"] for layer in d["layers"]) == d["flops"]
    assert "total:" in res.stderr and res.stdout.count("\n") == 1  # human output on stderr only


@pytest.mark.parametrize("model", ["densenet-tiny", "mobilenetv2", "resnext-tiny", "resnet20",
                                   "tests.core.custom_net:make_net"])
def test_uniform_half_keeps_output_shape(model: str, tmp_path) -> None:
    out = tmp_path / "p.pt"
    res = run_cli("prune", "--model", model, "--uniform", "0.5", "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    d = res.json()
    assert d["flops_after"] < 0.45 * d["flops_before"]  # half the channels -> about a quarter of the FLOPs
    plan = json.loads((tmp_path / "p.plan.json").read_text())
    assert plan["format"] == "hw_prune-plan/1" and plan["mode"] == "uniform"
    assert any(g["width_after"] < g["width_before"] for g in plan["groups"])
    b = load_model(str(out))
    with torch.no_grad():
        y = b.model.eval()(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)


def test_ratio_without_table_hits_flops_goal(tmp_path) -> None:
    res = run_cli("prune", "--model", "resnet20", "--ratio", "0.4", "-o", tmp_path / "r.pt", "--json",
                  "--channel-divisible", "2")
    assert res.returncode == 0, res.stderr
    d = res.json()
    assert abs(d["flops_after"] / d["flops_before"] - 0.6) <= 0.01
    plan = json.loads((tmp_path / "r.plan.json").read_text())
    assert all(g["width_after"] % 2 == 0 for g in plan["groups"] if g["width_after"] < g["width_before"])
    widths = [g["width_after"] / g["width_before"] for g in plan["groups"] if g["prunable"]]
    assert max(widths) - min(widths) > 0.05  # importance-driven: not the same ratio everywhere


def test_plan_and_transform_reproduce_model_and_onnx(tmp_path) -> None:
    base = tmp_path / "base.pt"  # fixed weights (built-ins are randomly initialised in every process)
    r0 = run_cli("train", "--model", "vgg-small", "--data", "synthetic:tiny", "--epochs", "0", "-o", base, "--json")
    assert r0.returncode == 0, r0.stderr
    r1 = run_cli("prune", "--model", base, "--uniform", "0.3", "-o", tmp_path / "a.pt", "--json").json()
    plan = tmp_path / "a.plan.json"
    r2 = run_cli("prune", "--model", base, "--plan", plan, "-o", tmp_path / "b.pt", "--json")
    assert r2.returncode == 0, r2.stderr
    assert r2.json()["flops_after"] == r1["flops_after"]
    r3 = run_cli("transform", "--model", base, "--plan", plan, "-o", tmp_path / "c.pt",
                 "--onnx", tmp_path / "c.onnx", "--json")
    assert r3.returncode == 0, r3.stderr
    assert r3.json()["flops_after"] == r1["flops_after"]
    a, c = load_model(str(tmp_path / "a.pt")), load_model(str(tmp_path / "c.pt"))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ya, yc = a.model.eval()(x), c.model.eval()(x)
    assert torch.allclose(ya, yc, atol=1e-5)  # same channels kept: same function
    sess = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    yo = sess.run(None, {"input": x.numpy()})[0]
    assert np.allclose(yo, yc.numpy(), atol=1e-4)
