"""`hw_prune measure`: time a whole model on a board (simulated DPU, this CPU, or a board over SSH)."""

from __future__ import annotations

import argparse
from typing import Any

from hw_prune import ui
from hw_prune.commands.common import add_model_args, model_from_args
from hw_prune.hw.backends import BACKENDS, default_backend, get_backend
from hw_prune.hw.boards import load_board

NAME = "measure"
HELP = "measure a model's latency / fps on a board (sim, local CPU or ssh)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--board", required=True, help="board name (see boards/) or path to a board YAML")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="sim (simulated DPU), local (this CPU via onnxruntime), ssh (a real board); "
                        "default: sim for DPU boards, local for host-cpu")
    p.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--threads", type=int, default=None, help="local backend: onnxruntime threads (default 1)")
    p.add_argument("--timer", choices=("auto", "cpu", "wall"), default=None,
                   help="local backend: 'cpu' = the inference thread's CPU clock (default with 1 thread; immune "
                        "to other processes on a shared machine), 'wall' = wall clock")
    p.add_argument("--host", action="append", default=None, help="ssh backend: USER@HOST[:PORT] (repeatable)")
    p.add_argument("--key", default=None, help="ssh backend: private key file")
    p.add_argument("--known-hosts", default=None, help="ssh backend: known_hosts file")
    add_ssh_extra_args(p)


def add_ssh_extra_args(p: argparse.ArgumentParser) -> None:
    """ssh-backend options beyond host/key/known_hosts (shared with profile)."""
    p.add_argument("--trust-new-host", action="store_true",
                   help="ssh backend: accept and record an unknown host key (otherwise it is refused)")
    p.add_argument("--remote-python", default=None, help="ssh backend: Python on the board (default: board file)")
    p.add_argument("--remote-dir", default=None, help="ssh backend: working directory on the board")
    p.add_argument("--ssh-timeout", type=float, default=None, help="ssh backend: command timeout in seconds")
    p.add_argument("--agent-backend", choices=("sim", "onnxruntime"), default=None,
                   help="ssh backend: what the on-board agent runs (sim = simulated DPU on the board's CPU)")


def backend_opts(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if getattr(args, "threads", None):
        opts["threads"] = args.threads
    if getattr(args, "timer", None):
        opts["timer"] = args.timer
    for k in ("host", "key", "known_hosts", "remote_python", "remote_dir", "agent_backend"):
        v = getattr(args, k, None)
        if v:
            opts["hosts" if k == "host" else k] = v
    if getattr(args, "trust_new_host", False):
        opts["trust_new_host"] = True
    if getattr(args, "ssh_timeout", None):
        opts["timeout"] = args.ssh_timeout
    return opts


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hw_prune.errors import UserError

    if args.runs < 1:
        raise UserError(f"--runs {args.runs} must be at least 1")
    board = load_board(args.board)
    backend_name = args.backend or default_backend(board)
    bundle = model_from_args(args)
    backend = get_backend(backend_name, board, **backend_opts(args))
    m = backend.measure_model(bundle.model, bundle.input_shape, runs=args.runs)
    kind = "SIMULATED" if m.simulated else "measured"
    ui.info(f"{bundle.name} on {board.name} ({backend_name}, {kind}): {m.fps:.1f} fps single-stream, "
            f"latency median {m.latency_ms:.3f} ms, p90 {m.p90_ms:.3f} ms, {m.fps_mt:.1f} fps with all "
            f"cores/threads ({m.runs} runs)")
    return {"model": bundle.name, "input_shape": list(bundle.input_shape), "board": board.name,
            "backend": backend_name, "simulated": m.simulated, "fps": m.fps, "latency_ms": m.latency_ms,
            "p90_ms": m.p90_ms, "p99_ms": m.p99_ms, "fps_mt": m.fps_mt, "runs": m.runs,
            "provenance": m.provenance}
