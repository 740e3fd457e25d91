"""FINN as a pruning target: the analytical folding/resource model against real finn-plus estimate builds,
and `prune --target-fps F --board pynq-z2` end to end (its output rebuilt with FINN independently)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import ROOT, assert_user_error, run_cli

pytestmark = pytest.mark.timeout(600)
SHAPE = (1, 3, 32, 32)
# cnv-small (32-64-64) at w4a4 on pynq-z2 (measured here with FINN estimate builds): the highest fps whose
# design fits <= 85% of the part is 8138; a 50%-pruned copy reaches 24414; the smallest widths 86356.
# 15000 fps lies between the baseline and what pruning can reach; 500000 is beyond any width.
TARGET = 15000
INFEASIBLE = 500000


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return {"HW_PRUNE_CACHE": str(tmp_path_factory.mktemp("cache")), "PYTHONPATH": str(ROOT)}


@pytest.fixture()
def cache(env, monkeypatch):
    monkeypatch.setenv("HW_PRUNE_CACHE", env["HW_PRUNE_CACHE"])


def test_analytic_model_matches_finn_estimates(cache):
    from hw_prune.hw.finn_backend import FinnEstimateBackend
    from hw_prune.hw.finn_cost import FinnFoldingCost
    from hw_prune.layers import extract_layer_specs
    from hw_prune.models.small import PlainCNN

    backend = FinnEstimateBackend("pynq-z2")
    fps_fit = {}
    for widths, fps in (((32, 64, 64), 4000), ((16, 32, 32), 15000)):
        net = PlainCNN(widths, 10).eval()
        specs = extract_layer_specs(net, SHAPE)
        at, best = backend.estimate(net, SHAPE, fps)
        cm = FinnFoldingCost("pynq-z2", target_fps=fps).bind(specs)  # uncalibrated: finn-plus' formulas
        tot = cm.totals(specs, cm.T)
        # measured: LUT within 0.2% (FINN minimises accumulators from the weights, the model uses the
        # bound), BRAM_18K and DSP exact, fps of the folding exact; 2% / 1 block leaves room for other weights
        assert abs(tot.luts / at.luts - 1) < 0.02, (widths, tot.luts, at.luts)
        assert abs(tot.brams - at.brams) <= 1 and abs(tot.dsps - at.dsps) <= 1, (widths, tot, at)
        assert abs(cm.clock_hz / tot.cycles / at.estimated_fps - 1) < 0.01
        model_fit, _ = cm.max_fps(specs)
        assert best.fits and abs(model_fit / best.estimated_fps - 1) < 0.02, (widths, model_fit, best.estimated_fps)
        fps_fit[widths] = (model_fit, best.estimated_fps)
    # the pruned network reaches a higher fps in both, by the same ordering
    assert fps_fit[(16, 32, 32)][0] > fps_fit[(32, 64, 64)][0]
    assert fps_fit[(16, 32, 32)][1] > fps_fit[(32, 64, 64)][1]


def test_cost_model_is_additive_and_aligned():
    from hw_prune.hw.finn_cost import FinnFoldingCost
    from hw_prune.hw.interfaces import CostModel
    from hw_prune.layers import extract_layer_specs
    from hw_prune.models.small import PlainCNN

    specs = extract_layer_specs(PlainCNN((32, 64, 64), 10).eval(), SHAPE)
    cm = FinnFoldingCost("pynq-z2", target_fps=TARGET).bind(specs)
    assert isinstance(cm, CostModel) and cm.alignment == 8
    p = cm.predict_model(specs)
    assert not p.fits and p.latency_ms > cm.max_util  # the unpruned net does not fit at 15000 fps
    assert p.per_layer_ms == pytest.approx(cm.predict_layers(specs))
    assert sum(p.per_layer_ms) >= p.latency_ms * 0.9  # layer costs add up to (about) the part's use


def test_prune_to_target_fps_fits_when_rebuilt(cli, env, tmp_path):
    res = cli("prune", "--model", "cnv-small", "--target-fps", TARGET, "--board", "pynq-z2", "--finetune-epochs", 0,
              "-o", tmp_path / "p.pt", "--json", env=env)
    assert res.returncode == 0, res.stderr
    out = res.json()
    for k in ("model", "plan", "flops_before", "flops_after", "predicted_fps", "measured_fps", "top1", "backend",
              "simulated", "board"):
        assert k in out, k
    assert out["backend"] == "finn-estimate" and out["simulated"] is True and out["board"] == "pynq-z2"
    assert out["in_window"] is True and out["measured_fps"] >= TARGET and out["baseline_fps"] < TARGET
    assert out["flops_after"] < out["flops_before"]
    assert "FINN estimate" in res.stderr and os.path.isfile(out["plan"])
    groups = {k: v for k, v in out["widths"].items() if k.startswith("features")}
    assert all(w % 8 == 0 for w in groups.values()), groups
    # independently: FINN's estimate build of the saved model at the target fits the part
    from hw_prune.hw.finn_backend import FinnEstimateBackend
    from hw_prune.models.io import load_model

    os.environ["HW_PRUNE_CACHE"] = env["HW_PRUNE_CACHE"]
    try:
        bundle = load_model(out["model"])
        at, best = FinnEstimateBackend("pynq-z2").estimate(bundle.model.eval(), SHAPE, TARGET)
    finally:
        os.environ.pop("HW_PRUNE_CACHE", None)
    assert at.fits and at.estimated_fps >= TARGET
    assert best.fits and best.estimated_fps == pytest.approx(out["measured_fps"])


def test_infeasible_target_is_one_line(cli, env, tmp_path):
    res = cli("prune", "--model", "cnv-small", "--target-fps", INFEASIBLE, "--board", "pynq-z2",
              "--backend", "finn-estimate", "-o", tmp_path / "x.pt", env=env)
    assert_user_error(res, "beyond what cnv-small can reach", "highest fps that fits is", "--target-fps <=")


def test_prune_with_data_finetunes_and_rechecks(cli, env, tmp_path):
    """With --data the default is to finetune the pruned model; the finetuned weights are built again."""
    res = cli("prune", "--model", "cnv-small", "--target-fps", TARGET, "--board", "pynq-z2", "--data", "synthetic:tiny",
              "--finetune-epochs", 1, "-o", tmp_path / "f.pt", "--json", env=env)
    assert res.returncode == 0, res.stderr
    out = res.json()
    assert out["top1"] is not None and 0.0 <= out["top1"] <= 100.0
    assert out["in_window"] is True and out["measured_fps"] >= TARGET
    assert "after 1 finetune epoch(s)" in res.stderr
