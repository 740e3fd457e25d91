"""hw_prune prune: choose per-group widths (ratio / threshold / uniform / plan / latency target), prune
physically, optionally iterate prune -> finetune; writes a dense model and its plan JSON beside it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from hw_prune import ui
from hw_prune.commands._core_args import add_data_args, check_output, load_splits
from hw_prune.commands.common import add_model_args, model_from_args
from hw_prune.errors import UserError

NAME = "prune"
HELP = "prune channels: --ratio / --threshold / --uniform / --plan / --target-fps (dense model + plan JSON)"
LATENCY_FLAGS = ("target_fps", "target_latency_ms", "speedup")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--workspace", "-w", help="workspace of `hw_prune ana` (sensitivity table for --ratio/--threshold)")
    m = p.add_argument_group("mode (pick one)")
    m.add_argument("--ratio", type=float, help="remove this fraction of the FLOPs (0..1), per-group ratios from the "
                   "sensitivity table (global threshold bisected to within 1%%); without a table: global "
                   "importance ranking")
    m.add_argument("--threshold", type=float, help="max top-1 drop (points) allowed per group, from the sensitivity table")
    m.add_argument("--uniform", type=float, help="remove this fraction of the channels of every group (no data needed)")
    m.add_argument("--plan", help="apply a plan JSON written by hw_prune")
    m.add_argument("--target-fps", type=float, help="latency-targeted: reach this fps on --board")
    m.add_argument("--target-latency-ms", type=float, help="latency-targeted: reach this latency (ms) on --board")
    m.add_argument("--speedup", type=float, help="latency-targeted: be this many times faster on --board")
    p.add_argument("--board", help="board for latency targets (see boards/)")
    p.add_argument("--backend", choices=("sim", "local", "ssh", "finn-estimate"), default=None,
                   help="latency backend for latency targets (default: the board's own: sim for DPU boards, "
                   "local for host-cpu, finn-estimate for FINN-only boards)")
    p.add_argument("--weight-bits", type=int, default=4, help="FINN targets: weight bits of the estimate builds "
                   "(default 4)")
    p.add_argument("--act-bits", type=int, default=4, help="FINN targets: activation bits (default 4)")
    p.add_argument("--max-util", type=float, default=None, help="FINN targets: a design fits when every resource "
                   "is at most this share of the part (default 0.85)")
    p.add_argument("--clock-ns", type=float, default=None, help="FINN targets: clock period (default: the board's)")
    p.add_argument("--host", action="append", default=[], help="USER@HOST[:PORT] for --backend ssh (repeatable)")
    p.add_argument("--channel-divisible", type=int, default=1, help="kept widths are multiples of N (default 1)")
    p.add_argument("--criterion", default="l2", choices=("l1", "l2", "taylor", "bn"),
                   help="channel importance (default l2; taylor needs --data)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="NAME", help="module names never pruned")
    p.add_argument("-o", "--output", default=None, help="pruned model file (default pruned.pt); the plan is "
                   "written beside it as OUTPUT.plan.json")
    p.add_argument("--iterations", type=int, default=1, help="prune -> finetune rounds, steps from large to small")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="finetune epochs per iteration (default 2 with --data, 0 without)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="retry an iteration with a smaller step if top-1 drops more than this (points)")
    p.add_argument("--workdir", default=None, help="iteration state / checkpoints (default OUTPUT.work/); "
                   "a rerun resumes there")
    p.add_argument("--lr", type=float, default=None, help="finetune learning rate (default 1e-3 adamw / 0.01 sgd)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="adamw")
    p.add_argument("--batch-size", type=int, default=64)


def _validate(args: argparse.Namespace) -> str:
    from hw_prune.prune.modes import check_ratio

    for flag in ("weight_bits", "act_bits"):
        v = getattr(args, flag)
        if not 2 <= v <= 8:
            raise UserError(f"--{flag.replace('_', '-')} {v} is out of range; use an integer from 2 to 8")
    if args.max_util is not None and not 0 < args.max_util <= 1:
        raise UserError(f"--max-util {args.max_util} must be in (0, 1]")
    if any(getattr(args, f, None) is not None for f in LATENCY_FLAGS):
        return "latency"
    modes = [m for m in ("ratio", "threshold", "uniform", "plan") if getattr(args, m) is not None]
    if len(modes) != 1:
        raise UserError("pick exactly one of --ratio, --threshold, --uniform, --plan, --target-fps, "
                        f"--target-latency-ms, --speedup (got {', '.join('--' + m for m in modes) or 'none'})")
    mode = modes[0]
    if mode in ("ratio", "uniform"):
        check_ratio(getattr(args, mode), f"--{mode}")
    if mode == "threshold" and not args.threshold > 0:
        raise UserError(f"--threshold {args.threshold} must be > 0 (top-1 points)")
    if mode == "threshold" and not args.workspace:
        raise UserError("--threshold needs a sensitivity table: run hw_prune ana and pass --workspace")
    if args.channel_divisible < 1:
        raise UserError(f"--channel-divisible {args.channel_divisible} must be >= 1")
    if args.iterations < 1:
        raise UserError(f"--iterations {args.iterations} must be >= 1")
    if args.finetune_epochs is not None and args.finetune_epochs < 0:
        raise UserError(f"--finetune-epochs {args.finetune_epochs} must be >= 0")
    if args.finetune_epochs and not args.data:
        raise UserError("--finetune-epochs needs --data (or pass --finetune-epochs 0)")
    if args.criterion == "taylor" and not args.data:
        raise UserError("--criterion taylor needs --data; use l1, l2 or bn without data")
    return mode


def _load_table(args: argparse.Namespace, bundle: Any, required: bool) -> Any:
    from hw_prune.prune.ana import ANA_JSON, SensitivityTable, model_fingerprint

    if not args.workspace:
        return None
    ws = Path(args.workspace)
    if not (ws / ANA_JSON).is_file():
        if required:
            raise UserError(f"no sensitivity table in {ws}; run hw_prune ana --workspace {ws} first")
        ui.info(f"[prune] no sensitivity table in {ws}; using the global importance ranking")
        return None
    table = SensitivityTable.load(ws)
    from hw_prune.atomic import read_json

    key = read_json(ws / ANA_JSON).get("key", {})
    if key.get("model") != model_fingerprint(bundle.model):
        raise UserError(f"the sensitivity table in {ws} was made for another model (or other weights); rerun "
                        "hw_prune ana for this model or use another --workspace")
    return table


def _make_step(args: argparse.Namespace, mode: str, base: Any, table: Any, loader: Any) -> Callable:
    """step_fn(bundle, fraction) for run_iterative; widths are computed on the ORIGINAL model's groups."""
    from hw_prune.graph import analyse, snap_width
    from hw_prune.prune import modes
    from hw_prune.prune.apply import prune_bundle
    from hw_prune.prune.flopmodel import FlopModel
    from hw_prune.prune.importance import group_importance
    from hw_prune.prune.plan import Plan

    shape = tuple(base.input_shape)
    info0 = analyse(base.model, shape, args.exclude)
    fm0 = FlopModel(base.model, shape, info0)
    groups0 = info0.groups
    cd = args.channel_divisible
    plan_widths: dict[str, int] = {}
    if mode == "plan":
        plan = Plan.load(args.plan)
        by = {g.name: g for g in groups0}
        for g in plan.groups:
            if g["name"] not in by:
                raise UserError(f"plan {args.plan} names group {g['name']} that this model does not have; "
                                "use the model the plan was made for")
            if by[g["name"]].width != g["width_before"]:
                raise UserError(f"plan {args.plan} expects {g['name']} to have {g['width_before']} channels but the "
                                f"model has {by[g['name']].width}; use the model the plan was made for")
            plan_widths[g["name"]] = g["width_after"]

    def target_widths(cur: Any, frac: float) -> dict[str, int]:
        if mode == "uniform":
            return modes.uniform_widths(groups0, args.uniform * frac, cd)
        if mode == "threshold":
            return modes.threshold_widths(groups0, table, args.threshold * frac, cd)
        if mode == "plan":
            return {g.name: snap_width(g.width - frac * (g.width - plan_widths.get(g.name, g.width)), g.width,
                                       g.divisor, cd) for g in groups0 if g.name in plan_widths}
        if table is not None:  # ratio with the sensitivity table (vai_p)
            w, _ = modes.ratio_widths_from_table(groups0, table, fm0, args.ratio * frac, cd)
            return w
        # ratio without a table: global importance ranking on the current model, goal in absolute FLOPs
        info_c = analyse(cur.model, shape, args.exclude)
        fm_c = FlopModel(cur.model, shape, info_c)
        goal = fm0.total * (1 - args.ratio * frac)
        r = 1 - goal / fm_c.total
        if r <= 0:
            return {}
        scores = group_importance(cur.model, shape, [g for g in info_c.groups if g.prunable], args.criterion,
                                  loader=loader, info=info_c)
        w, _ = modes.ratio_widths_from_importance(info_c.groups, scores, fm_c, r, cd)
        return w

    def step(cur: Any, frac: float) -> tuple[Any, Any]:
        from hw_prune.graph import channel_groups

        want = target_widths(cur, frac)
        now = {g.name: g for g in channel_groups(cur.model, shape)}
        widths = {n: min(now[n].width, snap_width(w, now[n].width, now[n].divisor)) for n, w in want.items()
                  if n in now and now[n].prunable}
        return prune_bundle(cur, widths, mode, args.criterion, loader=loader, exclude=args.exclude,
                            extra={"fraction_of_goal": frac}, command="prune")

    return step


def run(args: argparse.Namespace) -> dict[str, Any]:
    import time

    from hw_prune.flops import count_flops
    from hw_prune.graph import channel_groups
    from hw_prune.models.io import save_model
    from hw_prune.prune.plan import Plan, plan_path_for
    from hw_prune.provenance import provenance

    mode = _validate(args)
    out = check_output(args.output or "pruned.pt", "-o")
    bundle = model_from_args(args)
    splits = load_splits(args, bundle)
    if mode == "latency":
        from hw_prune.prune.latency_target import run_latency_prune

        return run_latency_prune(args, bundle, splits)
    t0 = time.time()
    finetune = args.finetune_epochs if args.finetune_epochs is not None else (2 if splits is not None else 0)
    table = _load_table(args, bundle, required=(mode == "threshold")) if mode in ("ratio", "threshold") else None
    loader = None
    if splits is not None:
        from hw_prune.data import make_loader

        loader = make_loader(splits.train, 64, shuffle=True, seed=args.seed)
    step = _make_step(args, mode, bundle, table, loader)
    shape = tuple(bundle.input_shape)
    before = count_flops(bundle.model, (1, *shape[1:]))
    baseline_top1 = None
    if splits is not None:
        from hw_prune.data import make_loader as _ml
        from hw_prune.train import evaluate

        baseline_top1 = evaluate(bundle.model, _ml(splits.val, 256))["top1"]
    history: list[dict[str, Any]] = []
    if args.iterations == 1 and finetune == 0:
        pruned, _ = step(bundle, 1.0)
        top1 = None
        if splits is not None:
            top1 = evaluate(pruned.model, _ml(splits.val, 256))["top1"]
    else:
        from hw_prune.prune.iterative import run_iterative

        workdir = Path(args.workdir) if args.workdir else out.with_name(out.name + ".work")
        lr = args.lr if args.lr is not None else (0.01 if args.optimizer == "sgd" else 1e-3)
        key = {"mode": mode, "value": getattr(args, mode), "criterion": args.criterion, "model": bundle.name,
               "channel_divisible": args.channel_divisible, "exclude": args.exclude, "data": args.data}
        res = run_iterative(bundle, step, args.iterations, finetune, splits, args.max_drop, workdir,
                            resume_key=key, baseline_top1=baseline_top1,
                            train_kwargs={"lr": lr, "optimizer": args.optimizer, "batch_size": args.batch_size,
                                          "seed": args.seed})
        pruned, top1, history = res.bundle, res.top1, res.history
    after = count_flops(pruned.model, (1, *shape[1:]))
    final_w = {g.name: g.width for g in channel_groups(pruned.model, shape)}
    groups0 = channel_groups(bundle.model, shape, args.exclude)
    plan = Plan(model_source=bundle.source, input_shape=list(shape), mode=mode, criterion=args.criterion,
                groups=[{"name": g.name, "width_before": g.width, "width_after": final_w.get(g.name, g.width),
                         "members": [list(m) for m in g.members], "divisor": g.divisor, "prunable": g.prunable}
                        for g in groups0],
                flops_before=before.flops, flops_after=after.flops,
                provenance=provenance(command="prune", data=args.data),
                extra={"goal": {m: getattr(args, m) for m in ("ratio", "threshold", "uniform", "plan")
                                if getattr(args, m) is not None},
                       "params_before": before.params, "params_after": after.params,
                       "sensitivity_table": str(Path(args.workspace) / "ana.json") if table is not None else None,
                       "channel_divisible": args.channel_divisible, "iterations": args.iterations,
                       "finetune_epochs": finetune, "baseline_top1": baseline_top1, "top1": top1,
                       "history": [{k: v for k, v in h.items() if k not in ("plan",)} for h in history]})
    pruned.meta.update({"plan": plan.to_dict(), "top1": top1})
    plan_file = plan_path_for(out)
    save_model(pruned, out)
    plan.save(plan_file)
    rows = [{"": "FLOPs", "before": f"{before.flops:,}", "after": f"{after.flops:,}",
             "ratio": f"{after.flops / before.flops:.3f}"},
            {"": "params", "before": f"{before.params:,}", "after": f"{after.params:,}",
             "ratio": f"{after.params / before.params:.3f}"}]
    if top1 is not None:
        rows.append({"": "top-1 (%)", "before": f"{baseline_top1:.2f}", "after": f"{top1:.2f}",
                     "ratio": f"{top1 - baseline_top1:+.2f} pts"})
    ui.table(rows, title=f"prune --{mode} ({time.time() - t0:.0f}s)")
    ui.info(f"[prune] wrote {out} and {plan_file}")
    res_d: dict[str, Any] = {"model": str(out), "plan": str(plan_file), "mode": mode,
                             "flops_before": before.flops, "flops_after": after.flops,
                             "flops_ratio": after.flops / before.flops,
                             "params_before": before.params, "params_after": after.params,
                             "groups_pruned": sum(1 for g in plan.groups if g["width_after"] < g["width_before"])}
    if top1 is not None:
        res_d.update({"top1": top1, "baseline_top1": baseline_top1})
    return res_d
