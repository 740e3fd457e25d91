"""`hw_prune quantize`: Brevitas PTQ (+ optional QAT), float vs quantized top-1, QONNX export + check."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

import torch

from hw_prune import ui
from hw_prune.commands.common import add_model_args, model_from_args
from hw_prune.errors import UserError
from hw_prune.provenance import provenance

NAME = "quantize"
HELP = "quantize a model with Brevitas (PTQ / QAT), export QONNX for FINN and check it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--data", required=True, help="'synthetic', 'synthetic:NAME' or a folder of images")
    p.add_argument("--weight-bits", type=int, default=8, help="weight bits, 2..8 (default 8)")
    p.add_argument("--act-bits", type=int, default=8, help="activation bits, 2..8 (default 8)")
    p.add_argument("--calib-batches", type=int, default=8, help="PTQ calibration batches of 64 (default 8)")
    p.add_argument("--qat-epochs", type=int, default=0, help="quantization-aware finetune epochs (default 0)")
    p.add_argument("--lr", type=float, default=None, help="QAT learning rate (default 0.002 with SGD)")
    p.add_argument("--eval-batches", type=int, default=None, help="evaluate on at most this many batches of 256")
    p.add_argument("--check-images", type=int, default=4, help="images compared between QONNX and Brevitas")
    p.add_argument("-o", "--output", required=True,
                   help="QONNX file (NAME.onnx; NAME.pt holds the quantized state) or a folder")


def _paths(out: str, model_arg: str, w: int, a: int) -> tuple[Path, Path]:
    p = Path(out)
    if p.suffix != ".onnx":
        if p.exists() and not p.is_dir():
            raise UserError(f"-o {p} is a file without .onnx suffix; pass NAME.onnx or a folder")
        stem = Path(model_arg).stem if Path(model_arg).is_file() else model_arg.rsplit(":", 1)[-1]
        p = p / f"{re.sub(r'[^A-Za-z0-9_-]+', '_', stem)}_w{w}a{a}.onnx"
    return p, p.with_suffix(".pt")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hw_prune.data import check_classes, load_data, make_loader
    from hw_prune.quant import calibrate, export_checked, save_quantized, to_brevitas
    from hw_prune.train import evaluate, train_model

    torch.manual_seed(0)
    if args.qat_epochs < 0:
        raise UserError(f"--qat-epochs {args.qat_epochs} must be >= 0")
    if args.check_images < 1:
        raise UserError(f"--check-images {args.check_images} must be >= 1")
    bundle = model_from_args(args)
    onnx_path, state_path = _paths(args.output, args.model, args.weight_bits, args.act_bits)
    qmodel = to_brevitas(bundle.model, args.weight_bits, args.act_bits)   # validates the bit widths early
    splits = load_data(args.data, bundle.input_shape)
    check_classes(splits, bundle.num_classes, bundle.name)
    val = make_loader(splits.val, 256)
    t0 = time.time()
    f_acc = evaluate(bundle.model, val, args.eval_batches)
    ui.info(f"float {bundle.name}: top-1 {f_acc['top1']:.2f}% on {f_acc['n']} {splits.name} images")
    n_cal = calibrate(qmodel, make_loader(splits.train, 64, shuffle=True), args.calib_batches)
    q_acc = evaluate(qmodel, val, args.eval_batches)
    ui.info(f"W{args.weight_bits}A{args.act_bits} after PTQ on {n_cal} images: top-1 {q_acc['top1']:.2f}%")
    ptq_top1 = q_acc["top1"]
    if args.qat_epochs:
        lr = args.lr if args.lr is not None else 0.002
        train_model(qmodel, splits, epochs=args.qat_epochs, lr=lr, label="qat")
        q_acc = evaluate(qmodel, val, args.eval_batches)
        ui.info(f"W{args.weight_bits}A{args.act_bits} after {args.qat_epochs} QAT epochs: top-1 {q_acc['top1']:.2f}%")
    sample = torch.stack([splits.val[i][0] for i in range(min(args.check_images, len(splits.val)))])
    check = export_checked(qmodel, bundle.input_shape, onnx_path, sample)
    ui.info(f"QONNX {onnx_path}: qonnx execute_onnx vs Brevitas on {check.images} images: max |diff| "
            f"{check.max_abs_diff:.3g} ({100 * check.rel_diff:.3g}% of the largest logit), top-1 agrees on "
            f"{100 * check.argmax_agree:.0f}%")
    prov = provenance(None, "brevitas", False, data=splits.name)
    result = {"qonnx": str(onnx_path), "state": str(state_path), "model": bundle.name,
              "weight_bits": args.weight_bits, "act_bits": args.act_bits, "input_bits": qmodel.config.input_bits,
              "float_top1": f_acc["top1"], "quant_top1": q_acc["top1"], "ptq_top1": ptq_top1,
              "qat_epochs": args.qat_epochs, "calib_images": n_cal, "eval_images": q_acc["n"],
              "max_abs_diff": check.max_abs_diff, "rel_diff": check.rel_diff,
              "argmax_agree": check.argmax_agree, "seconds": round(time.time() - t0, 1), "provenance": prov}
    save_quantized(bundle, qmodel, state_path, quantize={k: v for k, v in result.items() if k != "provenance"})
    ui.table([{"model": bundle.name, "bits": f"W{args.weight_bits}A{args.act_bits}",
               "float top-1": f_acc["top1"], "quant top-1": q_acc["top1"],
               "delta": q_acc["top1"] - f_acc["top1"], "max |diff|": check.max_abs_diff}],
             title="quantization", floatfmt="{:.3g}")
    return result
