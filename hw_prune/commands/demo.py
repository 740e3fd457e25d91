"""`hw_prune demo`: the main job. Train (or reuse) a built-in model on the synthetic set, then prune it to
2x its measured fps on the simulated ZCU104 with finetuning, and print the before/after table.

Default model: the ImageNet-style resnet18 at 32x32. A 32x32 resnet20 on a DPU is dominated by the
per-frame and per-layer fixed costs: on the simulated ZCU104 no width allocation gets it past ~1.08x
(try `--model resnet20`: the tool computes the reachable range and refuses 2x, naming the best fps).
resnet18 at 32x32 is weight-traffic bound on the DPU (11 M int8 weights per frame), so pruning pays:
up to ~2.6x, while it costs fewer MACs to train than resnet20 (37 M vs 41 M per image).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hw_prune import ui
from hw_prune.errors import UserError

NAME = "demo"
HELP = "main job: prune a built-in model to 2x its measured fps on the simulated ZCU104 (synthetic data)"

DEFAULT_MODEL = "resnet18"
DEFAULT_SIZE = 32


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"built-in model (default {DEFAULT_MODEL})")
    p.add_argument("--input-size", type=int, default=DEFAULT_SIZE, help=f"square input size (default {DEFAULT_SIZE})")
    p.add_argument("--speedup", type=float, default=2.0, help="target fps as a multiple of the measured baseline")
    p.add_argument("--board", default="zcu104", help="board (default zcu104, simulated DPU)")
    p.add_argument("--backend", default=None, help="measurement backend (default: sim for DPU boards)")
    p.add_argument("--epochs", type=int, default=8, help="baseline training epochs (cached in --workdir)")
    p.add_argument("--iterations", type=int, default=2, help="prune -> finetune steps towards the target")
    p.add_argument("--finetune-epochs", type=int, default=2, help="finetune epochs per step")
    p.add_argument("--data", default="synthetic", help="dataset (default synthetic: 5000 generated training "
                   "images; synthetic:small (1200) is faster but trains a much weaker baseline)")
    p.add_argument("--workdir", default="runs/demo", help="where the baseline, pruned model and plan go")


def _baseline(args: argparse.Namespace, shape: tuple[int, int, int, int], splits: Any) -> Any:
    """Trained baseline from the work dir, or train and cache it (atomic save: a killed run retrains)."""
    from hw_prune.models.io import load_model, save_model
    from hw_prune.train import train_model

    work = Path(args.workdir)
    path = work / f"baseline-{args.model}-{shape[2]}-e{args.epochs}.pt"
    if path.is_file():
        try:
            b = load_model(str(path))
            if b.meta.get("top1") is not None:
                ui.info(f"[demo] reusing trained baseline {path} (top-1 {b.meta['top1']:.2f}%)")
                return b
        except UserError:
            pass  # unreadable cache: retrain
    b = load_model(args.model, None, splits.num_classes, shape)
    ui.info(f"[demo] training {args.model} at {shape[2]}x{shape[3]} on {splits.name} for {args.epochs} epochs "
            f"(cached as {path})")
    res = train_model(b, splits, epochs=args.epochs, checkpoint=work / f".baseline-{args.model}-{shape[2]}.ckpt",
                      resume=True, label="baseline")
    b.meta["top1"] = float(res["top1"])
    save_model(b, path, top1=float(res["top1"]), data=splits.name, epochs=args.epochs)
    return b


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from hw_prune.atomic import ensure_writable_dir
    from hw_prune.data import load_data
    from hw_prune.prune.latency_target import run_latency_prune

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if args.input_size < 16:
        raise UserError(f"--input-size {args.input_size} is too small; use 16 or more")
    if args.epochs < 1:
        raise UserError(f"--epochs {args.epochs} must be >= 1 (the demo trains a baseline)")
    t0 = time.time()
    work = ensure_writable_dir(args.workdir)
    shape = (1, 3, args.input_size, args.input_size)
    splits = load_data(args.data, shape)
    bundle = _baseline(args, shape, splits)
    t_train = time.time() - t0
    pargs = SimpleNamespace(target_fps=None, target_latency_ms=None, speedup=args.speedup, board=args.board,
                            backend=args.backend, host=None, iterations=args.iterations,
                            finetune_epochs=args.finetune_epochs, criterion="l2", channel_divisible=1, exclude=(),
                            output=str(work / f"{args.model}-{shape[2]}-x{args.speedup:g}.pt"),
                            workspace=None, workdir=str(work / f"prune-{args.model}-{shape[2]}-x{args.speedup:g}"),
                            max_drop=None, runs=30, lr=None, optimizer="adamw", batch_size=64, json=args.json)
    # the trained baseline is cached; the pruning itself is redone on every run (fresh iteration state)
    import shutil

    shutil.rmtree(pargs.workdir, ignore_errors=True)
    res = run_latency_prune(pargs, bundle, splits)
    res["baseline_top1"] = bundle.meta.get("top1")
    res["seconds"] = {"baseline": t_train, "total": time.time() - t0}
    ui.info(f"[demo] done in {res['seconds']['total']:.0f}s (baseline {t_train:.0f}s); measured fps is from the "
            f"'{res['backend']}' backend" + (" (a SIMULATED DPU, not a real board)" if res["simulated"] else ""))
    return res
