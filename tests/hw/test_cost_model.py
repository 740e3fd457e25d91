"""Cost models fitted from fresh profiles: alignment learned from data, and fidelity on layers and whole
models that were never used in fitting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hw_prune.errors import UserError
from hw_prune.hw.backends import get_backend
from hw_prune.hw.cost_model import load_cost_model
from hw_prune.hw.reference import model_specs, random_width_specs
from hw_prune.hw.sweep import random_layer, staircase_layer
from tests.conftest import assert_user_error, run_cli


@pytest.fixture(scope="module")
def quick_zcu104(tmp_path_factory) -> Path:
    """A fresh --quick profile, made in two steps to exercise resuming."""
    d = tmp_path_factory.mktemp("zcu104q")
    first = run_cli("profile", "--board", "zcu104", "--quick", "-o", d, "--limit", "120", "--json", "--no-progress")
    assert first.returncode == 0, first.stderr
    assert first.json()["fit"]["measured_now"] >= 120
    res = run_cli("profile", "--board", "zcu104", "--quick", "-o", d, "--json", "--no-progress")
    assert res.returncode == 0, res.stderr
    out = res.json()
    assert out["model_dir"] == str(d) and out["simulated"] is True
    assert out["fit"]["already_measured"] == 120
    n_rows = len(pd.read_csv(d / "measurements.csv"))
    assert n_rows == out["fit"]["n_layers"] + len(json.loads((d / "fit_report.json").read_text())
                                                     ["reference_models_in_fit"])
    return d


def test_profile_outputs(quick_zcu104):
    for f in ("measurements.csv", "model.json", "fit_report.json", "fit_report.md", "staircase.png"):
        assert (quick_zcu104 / f).is_file() and (quick_zcu104 / f).stat().st_size > 100
    rep = json.loads((quick_zcu104 / "fit_report.json").read_text())
    assert rep["n_holdout"] >= 0.15 * rep["n_layers"]
    assert rep["holdout"]["within_10pct"] >= 0.95 and 0 <= rep["holdout"]["within_5pct"] <= 1
    assert (quick_zcu104 / "staircase.png").read_bytes()[:4] == b"\x89PNG"


def test_alignment_learned_from_data(quick_zcu104, tmp_path):
    cm = load_cost_model("zcu104", "sim", model_dir=str(quick_zcu104))
    assert cm.alignment == 16
    t16, t17, t32 = (cm.predict_layer(staircase_layer(c)) for c in (16, 17, 32))
    assert abs(t17 / t32 - 1) < 0.05, (t17, t32)
    assert t17 > 1.3 * t16, (t16, t17)
    # a board with another tile (B1600: 10 channels) gives another alignment from its own measurements
    res = run_cli("profile", "--board", "ultra96v2", "--quick", "-o", tmp_path, "--json", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert res.json()["fit"]["alignment"] == 10
    u = load_cost_model("ultra96v2", "sim", model_dir=str(tmp_path))
    assert u.predict_layer(staircase_layer(11)) > 1.2 * u.predict_layer(staircase_layer(10))


def test_cost_model_does_not_read_simulator_or_arch():
    src = (Path(__file__).resolve().parents[2] / "hw_prune" / "hw" / "cost_model.py").read_text()
    for banned in ("sim_dpu", "sim_params", ".dpu", "icp", "ocp"):
        assert banned not in src, banned


@pytest.fixture(scope="module")
def full_zcu104(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("zcu104full")
    res = run_cli("profile", "--board", "zcu104", "-o", d, "--json", "--no-progress")
    assert res.returncode == 0, res.stderr
    return d


def test_fidelity_on_unseen_layers_and_models(full_zcu104):
    cm = load_cost_model("zcu104", "sim", model_dir=str(full_zcu104))
    seen = set(map(tuple, pd.read_csv(full_zcu104 / "measurements.csv")[
        ["op", "cin", "cout", "kernel", "stride", "groups", "h_in", "w_in", "h_out", "w_out"]].astype(str).values))
    rng = np.random.default_rng(20261122)  # another seed than the profile's sweep
    layers = [s for s in (random_layer(rng, 4e9) for _ in range(600))
              if tuple(map(str, s.key())) not in seen]
    sim = get_backend("sim", "zcu104", seed=3)
    meas = np.array([m.latency_ms for m in sim.measure_layers(layers, runs=20)])
    err = np.abs(cm.predict_layers(layers) / meas - 1)
    assert len(layers) > 500 and (err <= 0.10).mean() >= 0.99, (err <= 0.10).mean()
    assert {s.op for s in layers} >= {"conv", "dwconv", "fc", "pool", "add", "concat"}
    assert any(s.groups > 1 and s.op == "conv" for s in layers)

    fit_models = {r["name"] for r in cm.model_records}
    models = [("resnet50", 224, None), ("densenet-tiny", 32, None), ("densenet-tiny", 224, None),
              ("resnext-tiny", 32, None), ("resnext-tiny", 224, None), ("resnet56", 32, None),
              ("resnet18", 160, None), ("vgg-small", 96, None), ("mobilenetv2-small", 96, None)]
    models += [("resnet50", 224, i) for i in range(6)] + [("mobilenetv2", 224, i) for i in range(6)] + \
        [("resnet18", 224, i) for i in range(3)]
    errs = []
    for name, size, variant in models:
        assert f"{name}@{size}" not in fit_models or variant is not None
        specs = list(model_specs(name, size))
        if variant is not None:
            specs = random_width_specs(specs, np.random.default_rng(100 + variant))
        m = sim.measure_specs(specs, runs=20).latency_ms
        errs.append(abs(cm.predict_model(specs).latency_ms / m - 1))
    errs = np.array(errs)
    assert (errs <= 0.10).mean() >= 0.95, errs


def test_calibrate_adds_whole_model_measurements(full_zcu104, tmp_path):
    cm = load_cost_model("zcu104", "sim", model_dir=str(full_zcu104))
    specs = list(model_specs("resnet50", 224))
    other = random_width_specs(specs, np.random.default_rng(5))
    before, before_other = cm.predict_model(specs).latency_ms, cm.predict_model(other).latency_ms
    cal = cm.calibrate(specs, before * 1.3)  # the board turned out slower than predicted
    assert cal.predict_model(specs).latency_ms == pytest.approx(before * 1.3, rel=1e-6)
    assert cal.predict_model(other).latency_ms == pytest.approx(before_other * 1.3, rel=1e-6)
    assert cm.predict_model(specs).latency_ms == before  # a copy: the original is untouched
    assert sum(cal.predict_model(specs).per_layer_ms) < cal.predict_model(specs).latency_ms
    cal.save(tmp_path)
    again = load_cost_model("zcu104", "sim", model_dir=str(tmp_path))
    assert again.predict_model(other).latency_ms == pytest.approx(before_other * 1.3, rel=1e-6)
    with pytest.raises(UserError):
        cm.calibrate(specs, 0.0)


def test_missing_model_says_how_to_make_one(tmp_path):
    with pytest.raises(UserError, match="hw_prune profile --board kv260 --backend ssh"):
        load_cost_model("kv260", "ssh")
    with pytest.raises(UserError, match="unknown board"):
        load_cost_model("nope")


def test_corrupt_measurements_csv(tmp_path, cli):
    (tmp_path / "measurements.csv").write_text("kind,op\nlayer\x00,\"\n")
    before = (tmp_path / "measurements.csv").read_bytes()
    assert_user_error(cli("profile", "--board", "zcu104", "--quick", "-o", tmp_path), "measurements")
    assert (tmp_path / "measurements.csv").read_bytes() == before
