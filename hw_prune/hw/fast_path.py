"""Does this CPU reward channel counts in multiples of a block? Measured, not assumed.

A CPU's convolution kernels (onnxruntime's MLAS / NCHWc blocked layouts) have a fast path for channel counts
that are multiples of a vector block; off it a layer can be slower than a larger one. Measured on this
project's 2-core x86 host: a 3x3 conv with 63 input channels takes 1.7x as long as with 64, and 24 output
channels take longer than 32. The cost model's smooth terms cannot express "slower although smaller", and
single layer timings on a shared machine scatter by +-15 %, so the profile asks the question directly:

    for a block b and a width m (a multiple of b), time the layer at m and at m - b/2 channels (in cin and
    in cout) in alternating bursts (LocalBackend.paired_ratio): ratio = t(m - b/2) / t(m).

`saved` = (1 - ratio) / (1 - (m - b/2) / m): the share of the proportional saving the cut actually gives.
Measured here: ~0 for 28/32, 60/64, 56/64, 124/128 (cutting off a multiple of 16 saves nothing), ~1 for
48/64 and 112/128. m - b/2 is off every block >= b and on every block < b, so the largest block whose
median `saved` is <= MAX_SAVED is the one the hardware rewards, and the width search keeps to its multiples
(cost model `alignment`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from hw_prune.hw.sweep import conv
from hw_prune.layers import LayerSpec

BLOCKS = (8, 16, 32)
WIDTHS = (32, 64, 128)
BASES = (conv(64, 64, 3, 1, 14, name="fastpath-k3"), conv(64, 64, 1, 1, 28, name="fastpath-k1"))
MAX_SAVED = 0.5
COLUMNS = ("block", "base", "side", "full", "reduced", "ratio", "proportional", "saved")


def probe_pairs() -> list[tuple[int, LayerSpec, str, LayerSpec, LayerSpec]]:
    """(block, base, 'cin'|'cout', layer at m, layer at m - block/2) for every probe."""
    out = []
    for b in BLOCKS:
        for m in WIDTHS:
            for base in BASES:
                for side in ("cin", "cout"):
                    full = base.with_channels(**{side: m})
                    out.append((b, base, side, full, base.with_channels(**{side: m - b // 2})))
    return out


def probe(paired_ratio: Callable[[LayerSpec, LayerSpec], float]) -> list[dict[str, Any]]:
    """Run every probe; paired_ratio(a, b) must return t(b) / t(a) timed in alternating bursts."""
    rows = []
    for b, base, side, full, reduced in probe_pairs():
        r = float(paired_ratio(full, reduced))
        m, k = getattr(full, side), getattr(reduced, side)
        rows.append({"block": b, "base": base.name, "side": side, "full": m, "reduced": k, "ratio": r,
                     "proportional": k / m, "saved": (1 - r) / (1 - k / m)})
    return rows


def choose_block(rows: Sequence[dict[str, Any]], tile: int) -> dict[str, Any]:
    """The largest probed block whose median `saved` is <= MAX_SAVED (the search's width multiple is then
    lcm(tile, block)); the tile alone when none is. Returns the summary stored in the cost model."""
    by_block: dict[int, float] = {}
    for b in sorted({int(r["block"]) for r in rows}):
        by_block[b] = round(float(np.median([float(r["saved"]) for r in rows if int(r["block"]) == b])), 3)
    rewarded = [b for b, v in by_block.items() if v <= MAX_SAVED]
    block = max(rewarded) if rewarded else 1
    return {"block": block, "median_saved_by_block": by_block, "max_saved": MAX_SAVED,
            "width_multiple": int(np.lcm(int(tile), block)), "pairs": len(rows)}
