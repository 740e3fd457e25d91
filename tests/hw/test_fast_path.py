"""The CPU fast-path probe: which channel block this CPU rewards, measured by paired timings, and how the
cost model turns it into the width multiple the search keeps to."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hw_prune.hw import fast_path
from hw_prune.hw.backends import get_backend
from hw_prune.hw.cost_model import fit_cost_model
from hw_prune.hw.sweep import conv


def _rows(saved_by_block: dict[int, float]) -> list[dict]:
    rows = []
    for b, full, reduced in [(b, m, m - b // 2) for b in saved_by_block for m in fast_path.WIDTHS]:
        prop = reduced / full
        ratio = 1 - saved_by_block[b] * (1 - prop)
        rows.append({"block": b, "base": "x", "side": "cin", "full": full, "reduced": reduced, "ratio": ratio,
                     "proportional": prop, "saved": (1 - ratio) / (1 - prop)})
    return rows


def test_choose_block_picks_the_largest_block_whose_cuts_save_nothing():
    got = fast_path.choose_block(_rows({8: 0.0, 16: 0.1, 32: 0.9}), tile=2)
    assert got["block"] == 16 and got["width_multiple"] == 16
    assert got["median_saved_by_block"] == {8: 0.0, 16: 0.1, 32: 0.9}
    # a device whose cuts all save what they should: no block, the tile stays the multiple
    smooth = fast_path.choose_block(_rows({8: 1.0, 16: 0.95, 32: 1.05}), tile=4)
    assert smooth["block"] == 1 and smooth["width_multiple"] == 4
    # the multiple is a multiple of both the tile and the block
    assert fast_path.choose_block(_rows({8: 0.2, 16: 0.9, 32: 0.9}), tile=6)["width_multiple"] == 24


def test_probe_pairs_cut_off_every_larger_block():
    for b, _base, side, full, reduced in fast_path.probe_pairs():
        k = getattr(reduced, side)
        assert getattr(full, side) % b == 0 and k % (b // 2) == 0
        assert all(k % bb != 0 for bb in fast_path.BLOCKS if bb >= b)


def test_fit_uses_the_probe_for_alignment():
    """The staircase fit keeps its tile; the search's alignment is lcm(tile, probed block)."""
    rng = np.random.default_rng(0)
    layers = [conv(int(ci), int(co), 3, 1, 14) for ci, co in rng.integers(4, 128, size=(40, 2))]
    df = [{**s.to_dict(), "latency_ms": 1e-6 * s.macs + 0.01} for s in layers]
    plain = fit_cost_model(df)
    probed = fit_cost_model(df, fast_path=_rows({8: 0.0, 16: 0.0, 32: 1.0}))
    assert probed.tile == plain.tile == plain.alignment
    assert probed.alignment == math.lcm(plain.tile, 16) and probed.meta["fast_path"]["block"] == 16


@pytest.fixture(scope="module")
def probe_rows() -> list[dict]:
    be = get_backend("local", "host-cpu")
    return fast_path.probe(be.paired_layer_ratio)


def test_real_probe_on_this_cpu_replicates(probe_rows):
    """Real paired timings on this CPU. Whatever block it finds, an independent second measurement of the
    same kind of cut must agree: cuts off a rewarded block save little, cuts of a smooth CPU save."""
    assert len(probe_rows) == len(fast_path.probe_pairs())
    assert all(r["ratio"] > 0 for r in probe_rows)
    got = fast_path.choose_block(probe_rows, tile=1)
    be = get_backend("local", "host-cpu")
    b = got["block"] if got["block"] > 1 else max(fast_path.BLOCKS)
    saved = []
    for base in fast_path.BASES:
        for side in ("cin", "cout"):
            full = base.with_channels(**{side: 96})
            cut = base.with_channels(**{side: 96 - b // 2})
            ratio = be.paired_layer_ratio(full, cut, rounds=9, runs=20)
            saved.append((1 - ratio) / (b / 2 / 96))
    if got["block"] > 1:
        assert np.median(saved) < 0.75, (got, saved)
    else:
        assert np.median(saved) > 0.25, (got, saved)
