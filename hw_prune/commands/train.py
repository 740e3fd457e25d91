"""hw_prune train: train a model on --data (SGD/AdamW, cosine/step LR, atomic checkpoints, --resume)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hw_prune import ui
from hw_prune.commands._core_args import add_data_args, add_train_args, check_output, load_splits, train_kwargs
from hw_prune.commands.common import add_model_args, model_from_args
from hw_prune.models.io import save_model
from hw_prune.provenance import provenance
from hw_prune.train import DEFAULT_EPOCHS

NAME = "train"
HELP = "train a model on a dataset (top-1/top-5, checkpoints, --resume)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_data_args(p, default="synthetic")
    add_train_args(p, DEFAULT_EPOCHS, "peak learning rate (default 1e-3 adamw / 0.05 sgd)")
    p.add_argument("-o", "--output", required=True, help="model file to write (.pt); a checkpoint OUTPUT.ckpt "
                   "is written after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT.ckpt")


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def run_training(args: argparse.Namespace, label: str) -> dict[str, Any]:
    from hw_prune.train import train_model

    out = check_output(args.output, "-o")
    bundle = model_from_args(args)
    splits = load_splits(args, bundle)
    ui.info(f"[{label}] {bundle.name} on {splits.name}: {len(splits.train)} train / {len(splits.val)} val images, "
            f"{args.epochs} epochs")
    res = train_model(bundle, splits, args.epochs, checkpoint=checkpoint_path(out), resume=args.resume,
                      label=label, **train_kwargs(args))
    bundle.meta.update({"top1": res["top1"], "top5": res["top5"], "data": splits.name,
                        "trained": {**res["config"], "history": res["history"]},
                        "provenance": provenance(command=label)})
    save_model(bundle, out)
    ui.info(f"[{label}] top-1 {res['top1']:.2f}%  top-5 {res['top5']:.2f}%  ({res['seconds']:.0f}s) -> {out}")
    return {"model": str(out), "top1": res["top1"], "top5": res["top5"], "loss": res["loss"],
            "epochs": args.epochs, "data": splits.name, "seconds": round(res["seconds"], 1),
            "history": res["history"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    return run_training(args, "train")
