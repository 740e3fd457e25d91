"""`hw_prune profile`: microbenchmark sweep on a board + fitted, channel-alignment-aware cost model."""

from __future__ import annotations

import argparse
from typing import Any

from hw_prune import ui
from hw_prune.commands.measure import add_ssh_extra_args, backend_opts
from hw_prune.hw.backends import BACKENDS, default_backend, get_backend
from hw_prune.hw.boards import load_board

NAME = "profile"
HELP = "measure a layer sweep on a board and fit its latency model (latency_models/<board>-<backend>/)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help="board name (see boards/) or path to a board YAML")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="sim (simulated DPU), local (this CPU), ssh (a real board); default: sim for DPU boards, "
                        "local for host-cpu")
    p.add_argument("--quick", action="store_true", help="a small sweep (tests, first look)")
    p.add_argument("-o", "--output", default=None, help="model directory (default latency_models/<board>-<backend>)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per layer (default 20 sim/ssh, 15 local)")
    p.add_argument("--threads", type=int, default=None, help="local backend: onnxruntime threads (default 1)")
    p.add_argument("--timer", choices=("auto", "cpu", "wall"), default=None,
                   help="local backend: 'cpu' = the inference thread's CPU clock (default with 1 thread; immune "
                        "to other processes on a shared machine), 'wall' = wall clock")
    p.add_argument("--host", action="append", default=None,
                   help="ssh backend: USER@HOST[:PORT] (repeat or comma-separate for several boards)")
    p.add_argument("--key", default=None, help="ssh backend: private key file")
    p.add_argument("--known-hosts", default=None, help="ssh backend: known_hosts file")
    add_ssh_extra_args(p)
    p.add_argument("--limit", type=int, default=None,
                   help="measure at most N new layer configs now, then fit (a rerun resumes with the rest)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hw_prune.errors import UserError
    from hw_prune.hw.profiler import profile

    if args.runs is not None and args.runs < 1:
        raise UserError(f"--runs {args.runs} must be at least 1")
    board = load_board(args.board)
    backend_name = args.backend or default_backend(board)
    if backend_name == "finn-estimate":
        raise UserError(f"board '{board.name}' is a FINN dataflow target: it has no layer-latency profile; "
                        f"use hw_prune build --target finn --board {board.name}")
    backend = get_backend(backend_name, board, **backend_opts(args))
    res = profile(backend, board, args.output, quick=args.quick, runs=args.runs, show_progress=not args.no_progress,
                  limit=args.limit)
    fit = res["fit"]
    h = fit["holdout"]
    kind = "SIMULATED" if backend.simulated else "measured"
    fp = fit.get("fast_path")
    why = f" (tile {fit['tile']}, fast-path block {fp['block']})" if fp else ""
    ui.info(f"{board.name} / {backend_name} ({kind}): {fit['n_layers']} layer configs, alignment {fit['alignment']}{why}; "
            f"held-out {h['n']}: MAPE {h['mape']:.2%}, {h['within_5pct']:.1%} within 5%, "
            f"{h['within_10pct']:.1%} within 10%")
    extra = ", fast_path.csv" if fp else ""
    ui.info(f"wrote {res['model_dir']}/ (measurements.csv, model.json, fit_report.json/.md, staircase.png{extra})")
    return {"model_dir": res["model_dir"], "board": board.name, "backend": backend_name,
            "simulated": backend.simulated, "fit": fit}
