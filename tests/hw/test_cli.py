"""measure on the simulated DPU and on this CPU (real onnxruntime timings), and stat --board's data."""

from __future__ import annotations

import pytest

from hw_prune.hw.cost_model import predict_for_stat
from hw_prune.models.io import load_model
from tests.conftest import assert_user_error


def test_measure_sim_json(cli):
    res = cli("measure", "--model", "resnet50", "--input-shape", "1,3,224,224", "--board", "zcu104", "--json",
              "--runs", "20")
    assert res.returncode == 0, res.stderr
    d = res.json()
    for k in ("fps", "latency_ms", "p90_ms", "fps_mt", "backend", "simulated", "board"):
        assert k in d
    assert d["backend"] == "sim" and d["simulated"] is True and d["board"] == "zcu104"
    assert d["provenance"]["simulated"] is True and "versions" in d["provenance"]
    assert 84.7 * 0.85 < d["fps"] < 84.7 * 1.15 and d["fps_mt"] > d["fps"]
    assert d["fps"] == pytest.approx(1000 / d["latency_ms"]) and d["p90_ms"] >= d["latency_ms"]
    assert "SIMULATED" in res.stderr


def test_measure_local_cpu_is_real(cli):
    res = cli("measure", "--model", "resnet20", "--board", "host-cpu", "--backend", "local", "--runs", "10", "--json")
    assert res.returncode == 0, res.stderr
    d = res.json()
    assert d["backend"] == "local" and d["simulated"] is False and d["board"] == "host-cpu"
    assert d["latency_ms"] > 0.05 and d["fps_mt"] > 0 and d["runs"] >= 3
    assert d["provenance"]["versions"]["onnxruntime"]


def test_local_layers_follow_work():
    from hw_prune.hw.backends import get_backend
    from hw_prune.hw.sweep import conv

    be = get_backend("local", "host-cpu")
    small, big = be.measure_layers([conv(16, 16, 3, 1, 14), conv(128, 128, 3, 1, 28)], runs=10)
    assert big.latency_ms > 3 * small.latency_ms  # 256x the MACs: real timings must show it
    assert small.runs >= 3 and small.spread_ms >= 0


def test_measure_bad_input(cli):
    assert_user_error(cli("measure", "--model", "resnet20", "--board", "zcu104", "--runs", "0"), "--runs")
    assert_user_error(cli("profile", "--board", "pynq-z2"), "FINN", "build")


def test_predict_for_stat_uses_shipped_model():
    bundle = load_model("mobilenetv2", input_shape=(1, 3, 224, 224))
    d = predict_for_stat(bundle, "zcu104")
    assert d["board"] == "zcu104" and d["backend"] == "sim" and d["simulated"] is True
    assert 284.7 * 0.75 < d["predicted_fps"] < 284.7 * 1.25
    assert len(d["per_layer"]) > 50 and {"name", "op", "predicted_ms"} <= set(d["per_layer"][0])
    assert sum(r["predicted_ms"] for r in d["per_layer"]) < d["predicted_latency_ms"]


def test_profile_local_small_run(cli, tmp_path):
    """A real (not simulated) profile on this CPU: part of the quick sweep, then fit and predict."""
    res = cli("profile", "--board", "host-cpu", "--quick", "--limit", "30", "-o", tmp_path, "--json", "--no-progress")
    assert res.returncode == 0, res.stderr
    d = res.json()
    assert d["backend"] == "local" and d["simulated"] is False and d["fit"]["measured_now"] == 30 + 3
    import pandas as pd

    df = pd.read_csv(tmp_path / "measurements.csv")
    assert (df["kind"] == "layer").sum() == 30 and (df["kind"] == "model").sum() == 3
    assert not df["simulated"].any() and (df["latency_ms"] > 0).all()
    from hw_prune.hw.cost_model import load_cost_model
    from hw_prune.hw.sweep import conv

    cm = load_cost_model("host-cpu", "local", model_dir=str(tmp_path))
    assert cm.predict_layer(conv(256, 256, 3, 1, 28)) > 5 * cm.predict_layer(conv(16, 16, 3, 1, 28)) > 0
    # a CPU also gets the paired fast-path probe, and the search's alignment follows it
    import math

    from hw_prune.hw.fast_path import probe_pairs

    probe = pd.read_csv(tmp_path / "fast_path.csv")
    assert len(probe) == len(probe_pairs()) and (probe["ratio"] > 0).all()
    fp = cm.meta["fast_path"]
    assert cm.alignment == math.lcm(cm.tile, fp["block"]) == d["fit"]["alignment"]
