"""The finn-estimate backend and the dataflow cost model (real finn-plus estimate builds)."""

from __future__ import annotations

from hw_prune.hw.interfaces import Backend, CostModel
from hw_prune.layers import extract_layer_specs
from tests.finn.nets import tiny_cnn


def test_cost_model_prefers_narrower_layers(tmp_path, monkeypatch):
    from hw_prune.hw.finn_backend import FinnDataflowCostModel

    monkeypatch.setenv("HW_PRUNE_CACHE", str(tmp_path))
    cm = FinnDataflowCostModel("pynq-z2")
    assert isinstance(cm, CostModel) and cm.alignment in (8, 16)
    wide = extract_layer_specs(tiny_cnn((32, 64, 64)), (1, 3, 32, 32))
    narrow = extract_layer_specs(tiny_cnn((16, 32, 32)), (1, 3, 32, 32))
    pw, pn = cm.predict_model(wide), cm.predict_model(narrow)
    assert pw.fits and pn.fits
    assert pn.fps > pw.fps > 0
    assert len(pw.per_layer_ms) == len(wide)
    # the slowest layer sets the pace of a dataflow design
    assert max(pw.per_layer_ms) * 1e-3 <= 1.0 / pw.fps * 1.0001
    # a second question about the same widths is answered from the cache (disk, then memory)
    again = FinnDataflowCostModel("pynq-z2").predict_model(wide)
    assert again.fps == pw.fps


def test_backend_estimates_a_model(tmp_path, monkeypatch):
    from hw_prune.hw.backends import get_backend

    monkeypatch.setenv("HW_PRUNE_CACHE", str(tmp_path))
    b = get_backend("finn-estimate", "pynq-z2")
    assert isinstance(b, Backend) and b.simulated is True and b.name == "finn-estimate"
    m = b.measure_model(tiny_cnn((16, 32, 32)), (1, 3, 32, 32))
    assert m.simulated is True and m.backend == "finn-estimate" and m.board == "pynq-z2"
    assert m.fps > 0 and m.latency_ms > 0 and m.per_layer_ms
    assert m.provenance["fits"] is True and m.provenance["simulated"] is True
