"""hw_prune stat: FLOPs (as torch.utils.flop_counter counts them) and parameters, per layer and total."""

from __future__ import annotations

import argparse
from typing import Any

from hw_prune import ui
from hw_prune.commands.common import add_model_args, model_from_args
from hw_prune.errors import UserError

NAME = "stat"
HELP = "FLOPs and parameters per layer and total (+ predicted latency with --board)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--board", help="also predict latency / fps on this board (see boards/)")
    p.add_argument("--backend", default="sim", help="latency backend for --board (default sim)")
    p.add_argument("--groups", action="store_true", help="also print the channel groups")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hw_prune.flops import count_flops
    from hw_prune.graph import channel_groups

    bundle = model_from_args(args)
    rep = count_flops(bundle.model, (1, *bundle.input_shape[1:]))
    try:
        groups = channel_groups(bundle.model, bundle.input_shape)
    except UserError as e:  # FLOPs still make sense for a model torch-pruning cannot trace
        ui.info(f"note: no channel groups ({e})")
        groups = []
    ui.table([{"layer": d["name"], "type": d["type"], "output": "x".join(map(str, d["output_shape"][1:])),
               "MFLOPs": d["flops"] / 1e6, "params": d["params"]} for d in rep.layers],
             title=f"{bundle.name} at {','.join(map(str, bundle.input_shape))}", floatfmt="{:.3f}")
    if args.groups:
        ui.table([{"group": g.name, "width": g.width, "divisor": g.divisor, "prunable": g.prunable,
                   "members": len(g.members)} for g in groups], title="channel groups")
    ui.info(f"total: {rep.flops / 1e6:.2f} MFLOPs (torch flop_counter, 2 x MACs), {rep.params:,} params, "
            f"output {list(rep.output_shape)}, {sum(g.prunable for g in groups)} prunable channel groups")
    out: dict[str, Any] = {"model": bundle.name, "input_shape": list(bundle.input_shape), "flops": rep.flops,
                           "params": rep.params, "output_shape": rep.output_shape, "layers": rep.layers,
                           "groups": [g.to_dict() for g in groups]}
    if args.board:
        try:
            from hw_prune.hw.cost_model import predict_for_stat
        except ImportError as e:
            raise UserError(f"latency prediction is not available in this install ({e}); drop --board") from None

        extra = predict_for_stat(bundle, args.board, args.backend)
        out.update(extra)
        if "predicted_latency_ms" in extra:
            ui.info(f"predicted on {args.board} ({args.backend}): {extra['predicted_latency_ms']:.3f} ms"
                    + (f", {extra['predicted_fps']:.1f} fps" if "predicted_fps" in extra else "")
                    + (" (cost model of a SIMULATED board, not a measurement)" if extra.get("simulated") else ""))
    return out
