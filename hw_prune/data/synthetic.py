"""A generated, seeded image-classification set that a small CNN can learn but not trivially.

Ten classes of shapes (disk, square, triangle, ring, plus, X, diamond, frame, half-disk, twin bars)
drawn with random position / scale / small rotation, striped textures in random colours on a
textured background, occluding clutter rectangles and Gaussian noise. Some images have low
fg/bg contrast or heavy occlusion, so accuracy saturates below 100% and pruning damage shows.
Everything is vectorised numpy (thousands of images per second) and cached as .npz.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hw_prune.atomic import atomic_path

CLASSES = ("disk", "square", "triangle", "ring", "plus", "cross", "diamond", "frame", "half-disk", "bars")
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SynthConfig:
    """One named variant. Sizes are images; ranges are (low, high) of uniform draws."""

    n_train: int = 5000
    n_val: int = 1000
    scale: tuple[float, float] = (0.45, 0.8)
    rotation: float = 0.35          # radians, +-; small so that square vs diamond stays meaningful
    noise: tuple[float, float] = (0.02, 0.1)
    clutter: int = 3                # max clutter rectangles per image
    min_contrast: float = 0.25      # min colour distance fg/bg (low values make some images hard)
    texture: float = 0.4            # stripe texture amplitude


VARIANTS: dict[str, SynthConfig] = {
    "default": SynthConfig(),
    "small": SynthConfig(n_train=1200, n_val=400),
    "tiny": SynthConfig(n_train=256, n_val=128),
    "large": SynthConfig(n_train=20000, n_val=4000),
    "hard": SynthConfig(scale=(0.3, 0.62), noise=(0.03, 0.16), clutter=5, min_contrast=0.12, texture=0.5),
}


def cache_dir() -> Path:
    return Path(os.environ.get("HW_PRUNE_CACHE") or Path.home() / ".cache" / "hw_prune")


def _shape_masks(label: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inside-mask of each image's shape; x, y are (N,H,W) shape-local coordinates (~[-1, 1])."""
    ax, ay = np.abs(x), np.abs(y)
    r2 = x * x + y * y
    a, b = np.abs(x + y) / np.sqrt(2), np.abs(x - y) / np.sqrt(2)
    m = np.zeros(x.shape, dtype=bool)
    lab = label[:, None, None]
    masks = {
        0: r2 < 0.8 ** 2,
        1: np.maximum(ax, ay) < 0.68,
        2: (y > -0.6) & (ax < (0.75 - y) * 0.55),
        3: (r2 > 0.5 ** 2) & (r2 < 0.88 ** 2),
        4: ((ax < 0.24) & (ay < 0.88)) | ((ay < 0.24) & (ax < 0.88)),
        5: ((a < 0.24) & (b < 0.88)) | ((b < 0.24) & (a < 0.88)),
        6: ax + ay < 0.92,
        7: (np.maximum(ax, ay) < 0.82) & (np.maximum(ax, ay) > 0.52),
        8: (r2 < 0.88 ** 2) & (y < 0.05),
        9: (np.abs(ax - 0.45) < 0.17) & (ay < 0.82),
    }
    for k, mk in masks.items():
        m |= (lab == k) & mk
    return m


def _stripes(rng: np.random.Generator, n: int, u: np.ndarray, v: np.ndarray, amp: float) -> np.ndarray:
    """Random-orientation sine stripes, 1 - amp*[0..1], shape (N,H,W)."""
    phi = rng.uniform(0, np.pi, n)[:, None, None]
    freq = rng.uniform(4, 16, n)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    a = rng.uniform(0, amp, n)[:, None, None]
    return 1 - a * (0.5 + 0.5 * np.sin(freq * (u * np.cos(phi) + v * np.sin(phi)) + phase))


def _colours(rng: np.random.Generator, n: int, min_dist: float) -> tuple[np.ndarray, np.ndarray]:
    fg = rng.uniform(0, 1, (n, 3))
    bg = rng.uniform(0, 1, (n, 3))
    for _ in range(20):  # resample pairs that are too similar
        bad = np.linalg.norm(fg - bg, axis=1) < min_dist
        if not bad.any():
            break
        bg[bad] = rng.uniform(0, 1, (int(bad.sum()), 3))
    return fg.astype(np.float32), bg.astype(np.float32)


def render(n: int, h: int, w: int, cfg: SynthConfig, rng: np.random.Generator,
           chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """n images (uint8, N,3,H,W) and labels (int64), class-balanced in random order."""
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    out = np.empty((n, 3, h, w), dtype=np.uint8)
    ss = 2  # supersample for smoother edges
    vv, uu = np.meshgrid(np.linspace(-1, 1, h * ss, dtype=np.float32), np.linspace(-1, 1, w * ss, dtype=np.float32),
                         indexing="ij")
    for s in range(0, n, chunk):
        lab = labels[s:s + chunk]
        k = len(lab)
        u, v = uu[None], vv[None]
        scale = rng.uniform(*cfg.scale, k)[:, None, None].astype(np.float32)
        cx = rng.uniform(-0.9, 0.9, k)[:, None, None] * (1 - scale)
        cy = rng.uniform(-0.9, 0.9, k)[:, None, None] * (1 - scale)
        th = rng.uniform(-cfg.rotation, cfg.rotation, k)[:, None, None]
        du, dv = u - cx, v - cy
        x = (du * np.cos(th) + dv * np.sin(th)) / scale
        y = (-du * np.sin(th) + dv * np.cos(th)) / scale
        mask = _shape_masks(lab, x.astype(np.float32), y.astype(np.float32))
        fg, bg = _colours(rng, k, cfg.min_contrast)
        tex_fg = _stripes(rng, k, u, v, cfg.texture)
        tex_bg = _stripes(rng, k, u, v, cfg.texture * 0.8)
        img = np.where(mask[:, None], fg[:, :, None, None] * tex_fg[:, None], bg[:, :, None, None] * tex_bg[:, None])
        for _ in range(cfg.clutter):  # occluding rectangles / bars in random colours
            active = rng.uniform(0, 1, k) < 0.6
            rcx, rcy = rng.uniform(-1, 1, (2, k))
            rw, rh = rng.uniform(0.03, 0.3, (2, k))
            rm = (np.abs(u - rcx[:, None, None]) < rw[:, None, None]) & \
                 (np.abs(v - rcy[:, None, None]) < rh[:, None, None]) & active[:, None, None]
            col = rng.uniform(0, 1, (k, 3)).astype(np.float32)
            img = np.where(rm[:, None], col[:, :, None, None], img)
        img = img.reshape(k, 3, h, ss, w, ss).mean(axis=(3, 5))  # downsample
        sigma = rng.uniform(*cfg.noise, k)[:, None, None, None]
        img = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
        out[s:s + k] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out, labels


def generate(variant: str, h: int, w: int, seed: int) -> dict[str, np.ndarray]:
    """Arrays x_train, y_train, x_val, y_val for a variant, from the cache or freshly generated."""
    cfg = VARIANTS[variant]
    key = json.dumps({"v": GENERATOR_VERSION, "cfg": asdict(cfg), "h": h, "w": w, "seed": seed}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir() / f"synthetic-{variant}-{h}x{w}-s{seed}-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in ("x_train", "y_train", "x_val", "y_val")}
        except (OSError, ValueError, KeyError):
            pass  # corrupt cache entry: regenerate and overwrite
    rng = np.random.default_rng(seed)
    xt, yt = render(cfg.n_train, h, w, cfg, rng)
    xv, yv = render(cfg.n_val, h, w, cfg, rng)
    arrays = {"x_train": xt, "y_train": yt, "x_val": xv, "y_val": yv}
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except Exception:  # an unwritable cache only costs regeneration time
        pass
    return arrays
