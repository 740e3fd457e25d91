"""Arguments and checks shared by the core commands (train, finetune, stat, ana, prune, transform)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from hw_prune.errors import UserError


def add_data_args(p: argparse.ArgumentParser, required: bool = False, default: str | None = None) -> None:
    p.add_argument("--data", required=required, default=default,
                   help="'synthetic', 'synthetic:NAME' (small, tiny, hard, large) or a folder with one "
                        "subfolder per class (optionally train/ and val/)")
    p.add_argument("--seed", type=int, default=0, help="data / training seed (default 0)")


def add_train_args(p: argparse.ArgumentParser, epochs: int, lr_help: str) -> None:
    p.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default {epochs})")
    p.add_argument("--lr", type=float, default=None, help=lr_help)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="adamw",
                   help="adamw (default) or sgd (momentum 0.9, nesterov)")
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine", help="LR schedule (default cosine)")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--weight-decay", type=float, default=None, help="default 5e-4 (sgd) / 0.05 (adamw)")


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"lr": args.lr, "optimizer": args.optimizer, "schedule": args.schedule, "batch_size": args.batch_size,
            "weight_decay": args.weight_decay, "seed": args.seed}


def load_splits(args: argparse.Namespace, bundle: Any) -> Any:
    """DataSplits for --data at the model's input shape, or None without --data."""
    if not getattr(args, "data", None):
        return None
    from hw_prune.data import check_classes, load_data

    splits = load_data(args.data, tuple(bundle.input_shape), getattr(args, "seed", 0))
    check_classes(splits, bundle.num_classes, bundle.name)
    return splits


def check_output(path: str | Path, what: str = "output") -> Path:
    """An output file path whose directory exists or can be made and is writable (checked before work)."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {p} is a directory; pass a file name such as {p / 'model.pt'}")
    parent = p.parent if str(p.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UserError(f"cannot write {what} {p}: {probe} is not a writable directory; choose another path")
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"cannot overwrite {what} {p}: permission denied; choose another path")
    return p
