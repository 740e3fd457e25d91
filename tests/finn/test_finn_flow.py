"""End to end with real parts: train a small CNN, prune it 50%, quantize both with Brevitas (4 and 8 bits),
export QONNX, check it against Brevitas, and build with finn-plus' estimate flow for pynq-z2 and zcu104."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.timeout(900)


def _prune_half(model: torch.nn.Module) -> torch.nn.Module:
    """50% uniform prune with hw_prune's own channel-group pruner (on a copy)."""
    import copy

    from hw_prune.graph import apply_widths, channel_groups

    m = copy.deepcopy(model)
    widths = {g.name: max(1, int(round(g.width * 0.5))) for g in channel_groups(m, (1, 3, 32, 32)) if g.prunable}
    return apply_widths(m, (1, 3, 32, 32), widths)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("cache")  # fresh: every build in this module really runs FINN
    return {"HW_PRUNE_CACHE": str(cache), "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def models(tmp_path_factory, env) -> dict[str, Path]:
    from hw_prune.data import load_data
    from hw_prune.models.io import ModelBundle, save_model
    from hw_prune.train import train_model
    from tests.finn.nets import tiny_cnn

    old = os.environ.get("HW_PRUNE_CACHE")
    os.environ["HW_PRUNE_CACHE"] = env["HW_PRUNE_CACHE"]
    try:
        d = tmp_path_factory.mktemp("models")
        torch.manual_seed(0)
        net = tiny_cnn()
        splits = load_data("synthetic", (1, 3, 32, 32))
        train_model(net, splits, epochs=4, optimizer="adamw", progress=False)
        src = {"kind": "import", "name": "tests.finn.nets:tiny_cnn"}
        save_model(ModelBundle(net, src, (1, 3, 32, 32), 10), d / "base.pt")
        save_model(ModelBundle(_prune_half(net), src, (1, 3, 32, 32), 10), d / "pruned.pt")
    finally:
        if old is None:
            os.environ.pop("HW_PRUNE_CACHE", None)
        else:
            os.environ["HW_PRUNE_CACHE"] = old
    return {"base": d / "base.pt", "pruned": d / "pruned.pt", "dir": d}


@pytest.fixture(scope="module")
def quantized(models, env) -> dict[tuple[str, int], dict]:
    out = {}
    for name in ("base", "pruned"):
        for bits in (8, 4):
            res = run_cli("quantize", "--model", models[name], "--data", "synthetic", "--weight-bits", bits,
                          "--act-bits", bits, "--calib-batches", 4, "-o", models["dir"] / f"{name}_w{bits}.onnx",
                          "--json", env=env)
            assert res.returncode == 0, res.stderr
            out[(name, bits)] = res.json()
    return out


def test_quantize_outputs_and_qonnx_matches_brevitas(quantized):
    for (name, bits), q in quantized.items():
        assert Path(q["qonnx"]).is_file() and Path(q["state"]).is_file()
        assert (q["weight_bits"], q["act_bits"]) == (bits, bits)
        # qonnx execute_onnx vs Brevitas on the same images: same numbers up to float rounding
        assert q["rel_diff"] < 1e-3, (name, bits, q["max_abs_diff"])
        assert q["argmax_agree"] == 1.0
    base_float = quantized[("base", 8)]["float_top1"]
    assert base_float > 13.0, "the float model did not learn; the accuracy checks below would be vacuous"


def test_8bit_top1_within_one_point_of_float(quantized):
    for name in ("base", "pruned"):
        q = quantized[(name, 8)]
        assert abs(q["quant_top1"] - q["float_top1"]) <= 1.0, q


def test_quantized_state_reloads_to_the_same_outputs(quantized):
    from hw_prune.quant import load_quantized
    from hw_prune.quant.export import execute_qonnx

    q = quantized[("pruned", 4)]
    qmodel, bundle = load_quantized(q["state"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = qmodel(x).numpy()
    got = execute_qonnx(q["qonnx"], x.numpy())
    assert abs(got - ref).max() <= 1e-3 * max(1.0, abs(ref).max())


def _build(env, *args) -> dict:
    res = run_cli("build", "--target", "finn", *args, "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return res.json()


def test_pruned_fits_at_higher_fps_on_pynq_z2(quantized, models, env):
    out = {}
    for name in ("base", "pruned"):
        r = _build(env, "--model", quantized[(name, 4)]["qonnx"], "--board", "pynq-z2",
                   "-o", models["dir"] / f"build_{name}_pynq")
        assert r["part"] == "xc7z020clg400-1" and r["fits"] is True
        assert r["max_fps_fit"] == r["estimated_fps"] > 0
        # fits means every resource is under the limit of the part
        for k in ("luts", "brams", "dsps"):
            assert r[k] <= r["max_util"] * r["capacity"][k] + 1e-9, (k, r[k])
        # the search tried a design that did not fit (else it reports FINN's maximum unfolding)
        assert any(not b["fits"] for b in r["builds"]) or r["estimated_fps"] == max(b["estimated_fps"] for b in r["builds"])
        report = Path(r["report_dir"])
        assert (report / "estimate_network_performance.json").is_file() and (report / "finn_build.log").is_file()
        perf = json.loads((report / "estimate_network_performance.json").read_text())
        assert perf["estimated_throughput_fps"] == pytest.approx(r["estimated_fps"])
        assert r["provenance"]["simulated"] is True and r["provenance"]["backend"] == "finn-estimate"
        out[name] = r
    assert out["pruned"]["max_fps_fit"] > out["base"]["max_fps_fit"], (out["pruned"]["max_fps_fit"],
                                                                       out["base"]["max_fps_fit"])


def test_zcu104_builds_at_a_target_fps(quantized, models, env):
    res = {}
    for name in ("base", "pruned"):
        r = _build(env, "--model", quantized[(name, 8)]["qonnx"], "--board", "zcu104", "--target-fps", 20000,
                   "-o", models["dir"] / f"build_{name}_zcu104")
        assert r["part"] == "xczu7ev-ffvc1156-2-e" and r["clock_ns"] == 5.0
        assert r["max_fps_fit"] is None and r["target_fps"] == 20000
        assert r["estimated_fps"] >= 20000 * 0.95, r["estimated_fps"]   # FINN folded for the target
        cycles = {l["layer"]: l["cycles"] for l in r["layers"]}
        assert max(cycles.values()) == r["layers"][[l["layer"] for l in r["layers"]].index(r["slowest_layer"])]["cycles"]
        res[name] = r
    # same target, half the channels: less hardware
    assert res["pruned"]["luts"] < res["base"]["luts"]


def test_prime_channel_count_builds(models, env, tmp_path):
    from hw_prune.models.io import ModelBundle
    from hw_prune.quant import calibrate, export_checked, to_brevitas
    from tests.finn.nets import prime_cnn

    torch.manual_seed(0)
    net = prime_cnn().eval()
    q = to_brevitas(net, 4, 4)
    calibrate(q, [(torch.randn(8, 3, 32, 32), None)] * 2, batches=2)
    chk = export_checked(q, (1, 3, 32, 32), tmp_path / "prime.onnx", torch.randn(2, 3, 32, 32))
    assert chk.rel_diff < 1e-3
    r = _build(env, "--model", tmp_path / "prime.onnx", "--board", "pynq-z2", "--target-fps", 3000,
               "-o", tmp_path / "build")
    mvau = [l for l in r["layers"] if l["op"].startswith("MVAU")]
    assert len(mvau) == 4
    # the 37-output-channel convs can only fold by divisors of 37
    for l in mvau[:3]:
        assert l["PE"] in (1, 37), l
    assert r["estimated_fps"] > 0


def test_quantize_with_qat_into_a_folder(tmp_path, env):
    res = run_cli("quantize", "--model", "tests.finn.nets:tiny_cnn", "--data", "synthetic:tiny", "--weight-bits", 4,
                  "--act-bits", 4, "--calib-batches", 1, "--qat-epochs", 1, "-o", tmp_path / "q", "--json", env=env)
    assert res.returncode == 0, res.stderr
    q = res.json()
    assert q["qat_epochs"] == 1 and Path(q["qonnx"]) == tmp_path / "q" / "tiny_cnn_w4a4.onnx"
    assert Path(q["qonnx"]).is_file() and Path(q["state"]).is_file()
    assert q["rel_diff"] < 1e-3 and q["argmax_agree"] == 1.0
    assert "after 1 QAT epochs" in res.stderr
