"""Closed-loop calibration of a fitted cost model: a scale from one measurement, offset and scale once the
calibrated models span a range (the baseline and the fastest pruned model)."""

from __future__ import annotations

import numpy as np

from hw_prune.hw.cost_model import fit_cost_model
from hw_prune.hw.sweep import conv


def _model():
    rng = np.random.default_rng(1)
    layers = [conv(int(ci), int(co), 3, 1, 14) for ci, co in rng.integers(4, 128, size=(40, 2))]
    return fit_cost_model([{**s.to_dict(), "latency_ms": 1e-6 * s.macs + 0.01} for s in layers])


def _net(width: int) -> list:
    return [conv(3, width, 3, 1, 32), conv(width, width, 3, 1, 32), conv(width, 2 * width, 3, 2, 32)]


def test_one_calibration_scales():
    cm = _model()
    big = _net(64)
    raw = cm.predict_model(big).latency_ms
    cal = cm.calibrate(big, 0.5 * raw)
    assert abs(cal.predict_model(big).latency_ms / (0.5 * raw) - 1) < 1e-6
    small = _net(16)
    assert abs(cal.predict_model(small).latency_ms / cm.predict_model(small).latency_ms - 0.5) < 1e-6
    assert cm.predict_model(big).latency_ms == raw  # the original is unchanged


def test_two_far_apart_calibrations_fit_offset_and_scale():
    """A 'device' that runs every network at 0.8 x predicted minus a fixed 0.02 ms: after the baseline and the
    fastest model are calibrated, a model in between is predicted on that line, where a scale alone is off."""
    cm = _model()
    truth = lambda specs: 0.8 * cm.predict_model(specs).latency_ms - 0.02  # noqa: E731
    big, small, mid = _net(64), _net(8), _net(32)
    cal = cm.calibrate(big, truth(big), "baseline").calibrate(small, truth(small), "fastest")
    offset, scale = cal.correction()
    assert abs(scale - 0.8) < 1e-6 and abs(offset + 0.02) < 1e-6
    for specs in (big, small, mid):
        assert abs(cal.predict_model(specs).latency_ms / truth(specs) - 1) < 1e-6
    # the scale-only correction (geometric mean of the ratios) misses the middle model by more
    scale_only = cal.scale * cm.predict_model(mid).latency_ms
    assert abs(scale_only / truth(mid) - 1) > 0.005
