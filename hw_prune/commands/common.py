"""Arguments shared by subcommands."""

from __future__ import annotations

import argparse

from hw_prune.models.io import ModelBundle, load_model, parse_input_shape


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required,
                   help="built-in name (e.g. resnet20), a .pt file saved by hw_prune, or package.module:factory")
    p.add_argument("--weights", help="state_dict file for a package.module:factory model")
    p.add_argument("--input-shape", default=None, help="N,C,H,W (default 1,3,32,32 or the saved model's)")
    p.add_argument("--num-classes", type=int, default=None, help="classes for built-in models (default 10 at "
                   "<=64 px, else 1000)")


def model_from_args(args: argparse.Namespace) -> ModelBundle:
    shape = parse_input_shape(args.input_shape) if args.input_shape else None
    return load_model(args.model, args.weights, args.num_classes, shape)
