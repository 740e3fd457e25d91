"""The microbenchmark sweep `hw_prune profile` measures: layer shapes CNNs use, dense around channel
alignment boundaries (15/16/17, 31/32/33, ...) so that tile steps show, spread up to 1024 channels and
7..112 pixels, plus a few whole reference models for the per-frame terms."""

from __future__ import annotations

import math

import numpy as np

from hw_prune.layers import LayerSpec

# channel counts: each multiple of 8/16 with its neighbours, then spread to 1024
STAIR_CHANNELS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 22, 23, 24, 25, 26, 28, 29,
                  30, 31, 32, 33, 34, 36, 40, 44, 47, 48, 49, 52, 56, 60, 63, 64, 65, 72, 80, 95, 96, 97, 112,
                  127, 128, 129, 144, 160, 191, 192, 193, 224, 255, 256, 257, 320, 384, 448, 511, 512, 513, 640,
                  768, 1024)
QUICK_CHANNELS = (4, 7, 8, 9, 12, 15, 16, 17, 20, 24, 28, 31, 32, 33, 40, 47, 48, 49, 63, 64, 65, 96, 128, 256)
# a real CPU takes ~0.5 s per configuration: fewer staircase points, still around the boundaries
CPU_CHANNELS = (4, 8, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 96, 127, 128, 129, 192, 256, 384, 512)
SPATIAL = (1, 2, 3, 4, 5, 7, 8, 9, 12, 14, 15, 16, 17, 20, 24, 28, 31, 32, 33, 40, 48, 56, 64, 80, 112)

# whole reference models (name, input size) measured for the per-frame term
REFERENCE_MODELS = {
    "dpu": [("resnet18", 224), ("mobilenetv2", 224), ("resnet20", 32), ("vgg-small", 32), ("mobilenetv2-0.75", 160)],
    "cpu": [("resnet20", 32), ("vgg-small", 32), ("mobilenetv2-small", 32), ("resnet18", 64), ("mobilenetv2", 96)],
}


def _out(size: int, k: int, s: int) -> int:
    return max(1, (size + 2 * (k // 2) - k) // s + 1)


def conv(cin: int, cout: int, k: int, s: int, hw: int, groups: int = 1, name: str = "") -> LayerSpec:
    o = _out(hw, k, s)
    return LayerSpec("conv", cin, cout, k, s, groups, hw, hw, o, o, name)


def dwconv(c: int, k: int, s: int, hw: int, name: str = "") -> LayerSpec:
    o = _out(hw, k, s)
    return LayerSpec("dwconv", c, c, k, s, c, hw, hw, o, o, name)


def staircase_layer(cout: int, quick: bool = False) -> LayerSpec:
    """The layer whose latency vs output channels is plotted (3x3, 64 input channels, 28x28)."""
    return conv(64, cout, 3, 1, 28, name=f"stair-k3-cout{cout}")


def _snap(rng: np.random.Generator, lo: int, hi: int) -> int:
    c = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
    r = rng.random()
    if r < 0.35:  # what real nets use: multiples of 8/16
        m = 16 if rng.random() < 0.5 else 8
        c = max(m, int(round(c / m)) * m)
    return max(1, min(hi, c))


def random_layer(rng: np.random.Generator, max_macs: float, max_ch: int = 1024) -> LayerSpec:
    """One random layer of the kinds CNNs use (bounded in MACs so a CPU run stays short)."""
    for _ in range(100):
        r = rng.random()
        hw = int(rng.choice([7, 14, 28, 56, 112])) if r < 0.55 else (int(rng.choice([1, 2, 3, 4, 5]))
                                                                    if r < 0.7 else int(rng.integers(6, 113)))
        u = rng.random()
        if u < 0.55:
            k = int(rng.choice([1, 3, 5, 7], p=[0.45, 0.4, 0.08, 0.07]))
            s = 2 if rng.random() < 0.25 else 1
            spec = conv(_snap(rng, 3, max_ch), _snap(rng, 3, max_ch), k, s, hw)
        elif u < 0.62:
            g = int(rng.choice([2, 4, 8, 16, 32]))
            cin = g * max(1, _snap(rng, 1, max_ch // g)) if g < max_ch else g
            cout = g * max(1, _snap(rng, 1, max_ch // g))
            spec = conv(cin, cout, 3, 2 if rng.random() < 0.25 else 1, hw, groups=g)
        elif u < 0.76:
            k = int(rng.choice([3, 5], p=[0.8, 0.2]))
            spec = dwconv(_snap(rng, 8, max_ch), k, 2 if rng.random() < 0.3 else 1, hw)
        elif u < 0.81:
            spec = LayerSpec("fc", _snap(rng, 16, 4096), _snap(rng, 10, 1024))
        elif u < 0.88:
            c = _snap(rng, 8, max_ch)
            if rng.random() < 0.5:
                spec = LayerSpec("pool", c, c, 3, 2, 1, hw, hw, _out(hw, 3, 2), _out(hw, 3, 2))
            else:
                spec = LayerSpec("pool", c, c, hw, hw, 1, hw, hw, 1, 1)
        elif u < 0.95:
            c = _snap(rng, 8, max_ch)
            spec = LayerSpec("add", c, c, 1, 1, 1, hw, hw, hw, hw)
        else:
            c = _snap(rng, 8, max_ch)
            spec = LayerSpec("concat", c, c, 1, 1, 1, hw, hw, hw, hw)
        if spec.macs <= max_macs and spec.cin * spec.h_in * spec.w_in <= max_macs / 4:
            return spec
    return conv(16, 16, 3, 1, 14)


def sweep(quick: bool = False, max_macs: float = 4e9, n_random: int | None = None, seed: int = 0,
          channels: tuple[int, ...] | None = None) -> list[LayerSpec]:
    """The configurations to measure, deterministic for a seed, without duplicates. `quick` keeps only
    the core staircases; `channels` replaces the staircase channel counts (the CPU sweep uses fewer)."""
    ch = channels or (QUICK_CHANNELS if quick else STAIR_CHANNELS)
    sp = (2, 4, 7, 8, 9, 14, 16, 17, 28) if quick else SPATIAL
    out: list[LayerSpec] = []
    for c in ch:  # staircases: one shape, channel count varied on each side
        out.append(staircase_layer(c))
        out.append(conv(128, c, 1, 1, 28))
        out.append(conv(c, 64, 3, 1, 14))
        out.append(conv(c, 128, 1, 1, 14))
        out.append(dwconv(max(c, 2), 3, 1, 28))
        if not quick:
            out.append(conv(64, c, 3, 2, 28))
            out.append(conv(c, 96, 1, 2, 28))
            out.append(LayerSpec("fc", 512, c))
            out.append(LayerSpec("pool", c, c, 3, 2, 1, 28, 28, 14, 14))
            out.append(LayerSpec("add", c, c, 1, 1, 1, 28, 28, 28, 28))
    for hw in sp:  # pixel parallelism: width steps
        out.append(conv(64, 64, 3, 1, hw))
        out.append(conv(96, 96, 1, 1, hw))
        out.append(dwconv(64, 3, 1, hw))
        if not quick:
            out.append(conv(32, 64, 5, 1, hw))
            out.append(conv(3, 64, 7, 2, hw * 2))
            out.append(LayerSpec("add", 64, 64, 1, 1, 1, hw, hw, hw, hw))
            out.append(LayerSpec("pool", 64, 64, hw, hw, 1, hw, hw, 1, 1))
            out.append(LayerSpec("concat", 64, 64, 1, 1, 1, hw, hw, hw, hw))
    for c in ((128, 512) if quick else (96, 128, 256, 512, 1024)):  # weight-bandwidth-bound regime
        for hw in ((1, 4) if quick else (1, 2, 4, 7)):
            out.append(conv(c, c, 3, 1, hw))
            out.append(conv(c, c, 1, 1, hw))
            if not quick:
                out.append(conv(c // 2, c, 3, 2, 2 * hw))
                if c <= 512:
                    out.append(conv(c // 2, c // 2, 5, 1, hw))
                    out.append(conv(c // 2, c, 5, 2, 2 * hw))
                    out.append(conv(c // 4, c // 2, 7, 2, 2 * hw))
    for g in ((4, 32) if quick else (2, 4, 8, 16, 32)):  # grouped convs (ResNeXt-style)
        for c in ((64, 256) if quick else (32, 64, 96, 128, 256, 512)):
            for s, hw in (((1, 14),) if quick else ((1, 7), (1, 14), (1, 28), (2, 28))):
                out.append(conv(c, c, 3, s, hw, groups=g))
    rng = np.random.default_rng(seed)
    n = n_random if n_random is not None else (120 if quick else 600)
    out += [random_layer(rng, max_macs) for _ in range(n)]
    seen: set = set()
    uniq = []
    for s in out:
        if s.macs <= max_macs and s.key() not in seen:
            seen.add(s.key())
            uniq.append(s)
    return uniq
