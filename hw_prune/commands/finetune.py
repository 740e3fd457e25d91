"""hw_prune finetune: continue training a (pruned) saved model on --data."""

from __future__ import annotations

import argparse
from typing import Any

from hw_prune.commands._core_args import add_data_args, add_train_args
from hw_prune.commands.common import add_model_args
from hw_prune.commands.train import run_training
from hw_prune.train import DEFAULT_FINETUNE_EPOCHS

NAME = "finetune"
HELP = "finetune a saved (pruned) model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_data_args(p, default="synthetic")
    add_train_args(p, DEFAULT_FINETUNE_EPOCHS, "peak learning rate (default 1e-3 adamw / 0.01 sgd)")
    p.add_argument("-o", "--output", required=True, help="model file to write (.pt); checkpoint OUTPUT.ckpt")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT.ckpt")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.lr is None:  # gentler than training from scratch
        args.lr = 0.01 if args.optimizer == "sgd" else 1e-3
    return run_training(args, "finetune")
