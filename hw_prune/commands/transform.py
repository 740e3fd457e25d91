"""hw_prune transform: model + plan -> dense pruned model (and ONNX with --onnx)."""

from __future__ import annotations

import argparse
from typing import Any

from hw_prune import ui
from hw_prune.commands._core_args import check_output
from hw_prune.commands.common import add_model_args, model_from_args
from hw_prune.errors import UserError

NAME = "transform"
HELP = "apply a plan to a model: dense pruned model (.pt) and optionally ONNX"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--plan", required=True, help="plan JSON written by hw_prune prune (or the latency search)")
    p.add_argument("-o", "--output", help="dense model file (.pt)")
    p.add_argument("--onnx", help="also export ONNX (opset 17) to this path")
    p.add_argument("--criterion", default=None, choices=("l1", "l2", "bn"),
                   help="channel importance used to pick kept channels (default: the plan's)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hw_prune.flops import count_flops
    from hw_prune.graph import channel_groups
    from hw_prune.models.io import save_model
    from hw_prune.prune.apply import prune_bundle
    from hw_prune.prune.plan import Plan

    if not args.output and not args.onnx:
        raise UserError("nothing to write: pass -o MODEL.pt and/or --onnx MODEL.onnx")
    out = check_output(args.output, "-o") if args.output else None
    onnx = check_output(args.onnx, "--onnx") if args.onnx else None
    plan = Plan.load(args.plan)
    bundle = model_from_args(args)
    groups = {g.name: g for g in channel_groups(bundle.model, bundle.input_shape)}
    widths = {}
    for g in plan.groups:
        cur = groups.get(g["name"])
        if cur is None:
            raise UserError(f"plan {args.plan} names group {g['name']} that model {bundle.name} does not have; "
                            "pass the model the plan was made for")
        if cur.width == g["width_after"]:
            continue  # already at the plan's width (e.g. the model was pruned with this plan)
        if cur.width != g["width_before"]:
            raise UserError(f"plan {args.plan} expects {g['name']} with {g['width_before']} channels, the model has "
                            f"{cur.width}; pass the model the plan was made for")
        widths[g["name"]] = g["width_after"]
    crit = args.criterion or (plan.criterion if plan.criterion in ("l1", "l2", "bn") else "l2")
    pruned, new_plan = prune_bundle(bundle, widths, plan.mode, crit, command="transform", source_plan=str(args.plan))
    if plan.extra:
        new_plan.extra = {**plan.extra, **new_plan.extra}
    pruned.meta["plan"] = new_plan.to_dict()
    res: dict[str, Any] = {"flops_before": count_flops(bundle.model, (1, *bundle.input_shape[1:])).flops,
                           "flops_after": new_plan.flops_after, "params_after": new_plan.extra.get("params_after"),
                           "groups_changed": len(widths)}
    if out:
        save_model(pruned, out)
        res["model"] = str(out)
    if onnx:
        from hw_prune.export import export_onnx

        export_onnx(pruned.model, pruned.input_shape, onnx)
        res["onnx"] = str(onnx)
    ui.info(f"[transform] {len(widths)} groups pruned: {res['flops_before'] / 1e6:.2f} -> "
            f"{res['flops_after'] / 1e6:.2f} MFLOPs; wrote {', '.join(str(p) for p in (out, onnx) if p)}")
    return res
