"""`hw_prune build`: FINN (finn-plus) dataflow build of a QONNX model for a board.

Without Vivado / Vitis HLS: estimate-only builds (fps, latency, per-layer cycles, LUT/BRAM/DSP).
Without --target-fps: bisection over FINN's target_fps for the highest fps whose design fits the part.
With Vivado and Vitis HLS on PATH: then the bitfile, PYNQ driver and deployment package at that fps
(unless --estimate-only).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from hw_prune import ui
from hw_prune.atomic import ensure_writable_dir, write_json
from hw_prune.errors import UserError
from hw_prune.provenance import provenance

NAME = "build"
HELP = "build a QONNX model with FINN for a board (estimates; bitfile where Vivado exists)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="QONNX file written by `hw_prune quantize`")
    p.add_argument("--target", choices=("finn",), default="finn", help="build flow (only 'finn')")
    p.add_argument("--board", required=True, help="pynq-z2, zcu104, kv260, ultra96v2 or a board YAML")
    p.add_argument("--target-fps", type=int, default=None,
                   help="fps FINN folds the design for; default: search the highest fps that fits the part")
    p.add_argument("--clock-ns", type=float, default=None, help="clock period (default: the board's FINN clock)")
    p.add_argument("--max-util", type=float, default=0.85,
                   help="a design fits when every resource is at most this fraction of the part (default 0.85)")
    p.add_argument("--estimate-only", action="store_true",
                   help="stop after FINN's estimate reports even when Vivado / Vitis HLS are on PATH "
                        "(without them this is the only flow)")
    p.add_argument("-o", "--output", default=None, help="report folder (default finn_build/<model>_<board>)")


def _copy_report(src: Path, dst: Path) -> None:
    """The chosen build's reports + FINN log into the user's folder (temp + rename)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src / "report", tmp)
    for log in ("build_dataflow.log",):
        if (src / log).is_file():
            shutil.copy2(src / log, tmp / "finn_build.log")
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hw_prune.finn import FinnBuilder, finn_target, have_vivado
    from hw_prune.finn.report import resource_rows

    model = Path(args.model)
    target = finn_target(args.board, args.clock_ns)
    if args.target_fps is not None and args.target_fps < 1:
        raise UserError(f"--target-fps {args.target_fps} must be at least 1")
    builder = FinnBuilder(model, target, args.max_util, progress=ui.info)
    out = ensure_writable_dir(Path(args.output or Path("finn_build") / f"{model.stem}_{target.board}"))
    t0 = time.time()
    if args.target_fps is not None:
        chosen = builder.build(args.target_fps)
        tried = [chosen]
        max_fit = None
    else:
        chosen, tried = builder.search_max_fps()
        max_fit = chosen.estimated_fps if chosen.fits else 0.0
    # the search's fitting design, or (with --target-fps) the design at that target
    report_dir = out / "report"
    _copy_report(Path(chosen.report_dir).parent, report_dir)
    bitfile_dir = None
    full = have_vivado() and not args.estimate_only
    if full:  # HLS, stitched IP, bitfile, PYNQ driver, deployment package at the chosen folding target
        bitfile_dir = builder.full_build(int(chosen.target_fps or 1), out / "bitfile_build")
    elif not have_vivado():
        ui.info("estimate-only flow (Vivado / Vitis HLS not on PATH): no bitfile, driver or deployment package")
    seconds = round(time.time() - t0, 1)

    ui.table(chosen.layer_frame()[["layer", "cycles", "fps_bound", "PE", "SIMD", "LUT", "BRAM_18K", "DSP"]],
             title=f"per-layer estimates ({target.finn_board}, {target.clock_mhz:.0f} MHz)", floatfmt="{:.4g}")
    ui.table(resource_rows(chosen, target), title=f"resources vs {target.part}")
    ui.table([{"target fps": r.target_fps, "estimated fps": r.estimated_fps, "LUT": r.luts, "BRAM_18K": r.brams,
               "DSP": r.dsps, "fits": r.fits, "cached": r.cached} for r in tried], title="estimate builds")
    verdict = "fits" if chosen.fits else "does NOT fit"
    ui.info(f"{model.name} on {target.board}: {chosen.estimated_fps:.1f} fps estimated (slowest layer "
            f"{chosen.slowest_layer}, {chosen.max_cycles} cycles), latency {chosen.latency_ms:.3f} ms, {verdict} "
            f"{target.part} at <= {100 * args.max_util:.0f}% use"
            + (f"; highest fps that fits: {max_fit:.1f}" if max_fit is not None else ""))
    result = {
        "model": str(model), "model_hash": builder.hash, "board": target.board, "part": target.part,
        "finn_board": target.finn_board, "clock_ns": target.clock_ns, "target_fps": args.target_fps,
        "estimated_fps": chosen.estimated_fps, "max_fps_fit": max_fit, "latency_ms": chosen.latency_ms,
        "luts": chosen.luts, "brams": chosen.brams, "dsps": chosen.dsps, "urams": chosen.urams,
        "fits": chosen.fits, "max_util": args.max_util, "utilization": chosen.utilization,
        "capacity": {"luts": target.luts, "brams": target.brams, "dsps": target.dsps, "urams": target.urams},
        "slowest_layer": chosen.slowest_layer, "layers": chosen.layers,
        "builds": [{"target_fps": r.target_fps, "estimated_fps": r.estimated_fps, "fits": r.fits,
                    "luts": r.luts, "brams": r.brams, "dsps": r.dsps, "cached": r.cached} for r in tried],
        "report_dir": str(report_dir), "bitfile_dir": str(bitfile_dir) if bitfile_dir else None,
        "estimate_only": not full, "seconds": seconds,
        "provenance": provenance(target.board, "finn-estimate", True, flow="finn-plus build_dataflow",
                                 estimate_only=not full, part=target.part),
    }
    write_json(out / "hw_prune_build.json", result)
    return result
