"""Datasets for `--data`: `synthetic`, `synthetic:NAME` or a folder of images (one subfolder per class).

`load_data(spec, input_shape, seed) -> DataSplits` and `make_loader(ds, batch_size, shuffle, seed)`.
Images are held in memory as normalised float tensors (the sets here are small), so loaders are cheap
with num_workers=0, which is what a 2-core machine wants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hw_prune.errors import UserError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ArrayDataset(Dataset):
    """Images (uint8 N,C,H,W) normalised once with per-channel mean/std; optional random h-flip."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 augment: bool = False) -> None:
        x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255)
        m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.x = (x - m) / s
        self.y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[i]
        if self.augment and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.y[i]

    def subset(self, n: int) -> "ArrayDataset":
        """The first n items (a deterministic validation subset) without augmentation."""
        d = ArrayDataset.__new__(ArrayDataset)
        d.x, d.y, d.augment = self.x[:n], self.y[:n], False
        return d


@dataclass
class DataSplits:
    train: Dataset
    val: Dataset
    num_classes: int
    name: str
    source: str
    classes: list[str] = field(default_factory=list)
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)


def _stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = x[: min(len(x), 2000)].astype(np.float32) / 255
    mean = xf.mean(axis=(0, 2, 3))
    std = xf.std(axis=(0, 2, 3)) + 1e-6
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _to_channels(x: np.ndarray, c: int, what: str) -> np.ndarray:
    if c == x.shape[1]:
        return x
    if c == 1 and x.shape[1] == 3:  # ITU-R 601 luma
        g = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        return np.clip(g + 0.5, 0, 255).astype(np.uint8)[:, None]
    raise UserError(f"{what} gives {x.shape[1]}-channel images but --input-shape asks for {c} channels; "
                    "use 1 or 3 channels")


def _make_splits(xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray, classes: list[str],
                 name: str, source: str) -> DataSplits:
    mean, std = _stats(xt)
    return DataSplits(ArrayDataset(xt, yt, mean, std, augment=True), ArrayDataset(xv, yv, mean, std),
                      len(classes), name, source, classes, mean, std)


def _load_synthetic(variant: str, input_shape: tuple[int, ...], seed: int) -> DataSplits:
    from hw_prune.data import synthetic

    if variant not in synthetic.VARIANTS:
        raise UserError(f"unknown synthetic variant '{variant}'; use one of: "
                        + ", ".join(f"synthetic:{v}" for v in synthetic.VARIANTS))
    _, c, h, w = input_shape
    a = synthetic.generate(variant, h, w, seed)
    name = "synthetic" if variant == "default" else f"synthetic:{variant}"
    return _make_splits(_to_channels(a["x_train"], c, name), a["y_train"], _to_channels(a["x_val"], c, name),
                        a["y_val"], list(synthetic.CLASSES), name, f"generated (hw_prune.data.synthetic v"
                        f"{synthetic.GENERATOR_VERSION}, seed {seed})")


def _read_images(files: list[Path], c: int, h: int, w: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(files), c, h, w), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"cannot read image {f}: {e}; remove or fix it") from None
        out[i] = a[None] if c == 1 else a.transpose(2, 0, 1)
    return out


def _scan(root: Path) -> dict[str, list[Path]]:
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    return {d.name: sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_EXTS) for d in classes}


def _load_folder(root: Path, input_shape: tuple[int, ...]) -> DataSplits:
    _, c, h, w = input_shape
    if c not in (1, 3):
        raise UserError(f"image folders give 1 or 3 channels, but --input-shape asks for {c}")
    if (root / "train").is_dir() and (root / "val").is_dir():
        tr, va = _scan(root / "train"), _scan(root / "val")
        classes = sorted(set(tr) | set(va))
        pairs_t = [(f, classes.index(k)) for k, fs in tr.items() for f in fs]
        pairs_v = [(f, classes.index(k)) for k, fs in va.items() for f in fs]
    else:
        sc = _scan(root)
        classes = sorted(sc)
        pairs_t, pairs_v = [], []
        for k, fs in sc.items():  # deterministic: every 5th file of each class goes to validation
            for i, f in enumerate(fs):
                (pairs_v if i % 5 == 4 else pairs_t).append((f, classes.index(k)))
    if not classes or not pairs_t:
        raise UserError(f"no images found in {root}; expected one subfolder per class (optionally under "
                        "train/ and val/) holding image files")
    if not pairs_v:
        raise UserError(f"{root} has too few images for a validation split; add at least 5 per class "
                        "or a val/ folder")
    xt = _read_images([p for p, _ in pairs_t], c, h, w)
    xv = _read_images([p for p, _ in pairs_v], c, h, w)
    yt = np.array([y for _, y in pairs_t], dtype=np.int64)
    yv = np.array([y for _, y in pairs_v], dtype=np.int64)
    return _make_splits(xt, yt, xv, yv, classes, root.name, f"folder {root.resolve()}")


def load_data(spec: str, input_shape: tuple[int, ...] = (1, 3, 32, 32), seed: int = 0) -> DataSplits:
    """Resolve `--data`: `synthetic`, `synthetic:NAME`, or a folder path."""
    if spec is None or str(spec).strip() == "":
        raise UserError("--data is empty; use 'synthetic' or a folder of images (one subfolder per class)")
    spec = str(spec)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        variant = spec.split(":", 1)[1] if ":" in spec else "default"
        return _load_synthetic(variant, tuple(input_shape), seed)
    p = Path(spec).expanduser()
    if not p.exists():
        raise UserError(f"data '{spec}' is neither 'synthetic[:NAME]' nor an existing folder; "
                        "pass --data synthetic or a folder with one subfolder per class")
    if not p.is_dir():
        raise UserError(f"data '{spec}' is a file, not a folder; pass a folder with one subfolder per class")
    return _load_folder(p, tuple(input_shape))


def make_loader(ds: Dataset, batch_size: int = 64, shuffle: bool = False, seed: int = 0) -> DataLoader:
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=0, generator=g if shuffle else None)


def check_classes(splits: DataSplits, num_classes: int, model_name: str = "model") -> None:
    """The model's classifier must match the data's classes."""
    if num_classes and splits.num_classes > num_classes:
        raise UserError(f"data '{splits.name}' has {splits.num_classes} classes but {model_name} outputs "
                        f"{num_classes}; pass --num-classes {splits.num_classes} or matching data")


__all__ = ["DataSplits", "ArrayDataset", "load_data", "make_loader", "check_classes"]
