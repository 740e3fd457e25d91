"""hw_prune ana: sensitivity analysis per channel group x pruning ratio (resumable, cached in a workspace)."""

from __future__ import annotations

import argparse
from typing import Any

from hw_prune.commands._core_args import add_data_args, load_splits
from hw_prune.commands.common import add_model_args, model_from_args
from hw_prune.errors import UserError

NAME = "ana"
HELP = "sensitivity analysis: top-1 per channel group x pruning ratio (adaptive BN; resumable)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hw_prune.prune.ana import DEFAULT_RATIOS

    add_model_args(p)
    add_data_args(p, required=True)
    p.add_argument("--workspace", "-w", required=True, help="folder for ana.json / ana.csv / ana.png (reused by prune)")
    p.add_argument("--criterion", default="l2", choices=("l1", "l2", "taylor", "bn"),
                   help="channel importance used to pick the channels removed (default l2)")
    p.add_argument("--ratios", type=float, nargs="+", default=list(DEFAULT_RATIOS),
                   help="channel pruning ratios to test (default 0.1 ... 0.9)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="NAME", help="module names never pruned")
    p.add_argument("--val-images", type=int, default=400, help="validation images per cell (default 400)")
    p.add_argument("--bn-batches", type=int, default=2, help="training batches of 64 for BN re-calibration (default 2)")
    p.add_argument("--restart", action="store_true", help="discard a table in the workspace made with other settings")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hw_prune.prune.ana import run_ana

    if args.val_images < 1 or args.bn_batches < 1:
        raise UserError("--val-images and --bn-batches must be >= 1")
    bundle = model_from_args(args)
    splits = load_splits(args, bundle)
    res = run_ana(bundle, splits, args.workspace, args.criterion, args.ratios, args.exclude,
                  val_images=args.val_images, bn_batches=args.bn_batches, restart=args.restart)
    return res
