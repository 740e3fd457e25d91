"""The simulated ZCU104 against the published Vitis AI 3.0 numbers (DESIGN.md 3), and its physics."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from hw_prune.hw.boards import load_board
from hw_prune.hw.reference import PUBLISHED_ZCU104, gops, published_specs
from hw_prune.hw.sim_dpu import SimDPU
from hw_prune.hw.sweep import staircase_layer


@pytest.fixture(scope="module")
def zcu104() -> SimDPU:
    return SimDPU(load_board("zcu104").sim_params(), seed=0)


def test_published_resnet50_series_and_mobilenetv2(zcu104):
    rows = []
    for name, g, st_fps, mt_fps in PUBLISHED_ZCU104:
        specs = published_specs(name)
        assert abs(gops(specs) - g) / g < 0.02, (name, gops(specs))
        m = zcu104.measure_model(specs, runs=30)
        rows.append((name, m["fps"], st_fps))
        tol = 0.25 if name == "mobilenetv2" else 0.15
        assert abs(m["fps"] / st_fps - 1) <= tol, (name, m["fps"], st_fps)
        assert m["fps_mt"] > 1.5 * m["fps"]  # two cores, sharing DDR
    # pruning ResNet-50 speeds it up far less than its GOPs shrink (per-frame and memory costs)
    fps = {n: f for n, f, _ in rows}
    assert 1.3 < fps["resnet50-pruned70"] / fps["resnet50"] < 2.0


def test_noise_is_seeded_and_small(zcu104):
    specs = published_specs("resnet50")
    a, b = zcu104.measure_model(specs, 40), SimDPU(load_board("zcu104").sim_params(), seed=0).measure_model(specs, 40)
    assert a == b
    c = SimDPU(load_board("zcu104").sim_params(), seed=7).measure_model(specs, 40)
    assert c["latency_ms"] != a["latency_ms"]
    exact, _ = zcu104.model_ms(specs)
    assert abs(a["latency_ms"] / exact - 1) < 0.01 and a["p90_ms"] > a["latency_ms"] and a["p99_ms"] >= a["p90_ms"]
    lay = zcu104.measure_layers([staircase_layer(32)], runs=50)[0]
    rel = lay["spread_ms"] / lay["latency_ms"]
    assert 0.005 < rel < 0.04


def test_channel_tiles_and_boards_from_arch(zcu104):
    t = {c: zcu104.layer_ms(staircase_layer(c)) for c in (16, 17, 32, 33)}
    assert t[17] == pytest.approx(t[32]) and t[17] > 1.4 * t[16] and t[33] > 1.2 * t[32]
    dw = [zcu104.layer_ms({"op": "dwconv", "cin": c, "cout": c, "kernel": 3, "stride": 1, "groups": c,
                           "h_in": 28, "w_in": 28, "h_out": 28, "w_out": 28}) for c in (64, 32)]
    assert dw[1] > 0.45 * dw[0]  # depthwise: halving channels saves about half, not 3/4 like a dense conv
    specs = published_specs("resnet50")
    sims = {b: SimDPU(load_board(b).sim_params()) for b in ("kv260", "zcu102", "ultra96v2")}
    st = {b: s.model_ms(specs)[0] for b, s in sims.items()}
    ref = zcu104.model_ms(specs)[0]
    assert st["kv260"] == pytest.approx(ref, rel=0.02)           # same arch and clock, one core
    assert st["zcu102"] > ref * 1.03                               # 281 vs 300 MHz
    assert st["ultra96v2"] > 1.8 * ref                             # B1600, narrower DDR
    assert sims["kv260"].throughput_fps(specs) < 0.6 * zcu104.throughput_fps(specs)
    assert sims["zcu102"].throughput_fps(specs) > zcu104.throughput_fps(specs)


def test_sim_dpu_imports_only_stdlib_and_numpy():
    src = Path(__file__).resolve().parents[2] / "hw_prune" / "hw" / "sim_dpu.py"
    mods = set()
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mods.add((node.module or "").split(".")[0])
    import sys
    assert mods - {"numpy", "__future__"} <= set(sys.stdlib_module_names), mods
    assert "hw_prune" not in mods and "torch" not in mods
    sim = SimDPU({"pp": 8, "icp": 16, "ocp": 16, "cores": 1, "clock_mhz": 300, "ddr_gbps": 19.2})
    assert np.isfinite(sim.layer_ms({"op": "fc", "cin": 512, "cout": 10}))
