"""Run finn-plus `build_dataflow` on a QONNX model and search the highest fps that fits the part.

A `FinnBuilder` is bound to one model file and one target. Its builds are cached on disk under
`$HW_PRUNE_CACHE/finn/<model sha256>/<board_part_clock>/` (default ~/.cache/hw_prune):
- `base/`: the steps that do not depend on the fps target (QONNX -> FINN, streamline, convert to HW,
  partition, specialize), run once;
- `fps_<T>/`: a build restarted from `step_target_fps_parallelization` with target_fps=T (folding,
  estimate reports). Written to a temp dir and renamed, so a crash never leaves a half cache entry.
FINN's console output goes to each build's `build_dataflow.log`; progress is shown on stderr.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from hw_prune.errors import UserError
from hw_prune.finn.env import finn_session, have_vivado
from hw_prune.finn.report import BuildReport, parse_reports
from hw_prune.finn.steps import FOLDING_STEP, estimate_steps, full_steps
from hw_prune.finn.target import FinnTarget
from hw_prune.quant.export import is_qonnx

DEFAULT_MAX_UTIL = 0.85   # place-and-route rarely closes above ~85 % LUT use on these parts
# FINN's default (36 bits of weights per PE and cycle) caps how far SetFolding unfolds a layer, so a
# "highest fps that fits" search would stop at that cap, not at the part's size; FINN's docs advise a
# large value when targeting full unfolding / high performance.
MVAU_WWIDTH_MAX = 4096
CACHE_VERSION = "v1"      # bump when the steps change
_SPECIALIZE = "step_specialize_layers"


def cache_root() -> Path:
    return Path(os.environ.get("HW_PRUNE_CACHE") or Path.home() / ".cache" / "hw_prune") / "finn"


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _run_finn(model_path: Path | str, out_dir: Path, target: FinnTarget, steps: list, target_fps: int | None,
              start_step: str | None = None, stop_step: str | None = None, outputs: list | None = None) -> None:
    """One build_dataflow_cfg call with the workarounds applied and FINN's console output silenced."""
    with finn_session():
        import finn.builder.build_dataflow as bd
        import finn.builder.build_dataflow_config as bc
        from finn.util.basic import part_map

        kw: dict[str, Any] = {"board": target.finn_board} if target.finn_board in part_map else \
            {"fpga_part": target.part}
        cfg = bc.DataflowBuildConfig(
            output_dir=str(out_dir), synth_clk_period_ns=target.clock_ns, target_fps=target_fps or 1,
            shell_flow_type=bc.ShellFlowType.VIVADO_ZYNQ, steps=steps, start_step=start_step,
            stop_step=stop_step, generate_outputs=outputs or [bc.DataflowOutputType.ESTIMATE_REPORTS],
            save_intermediate_models=True, console_log_level=bc.LogLevel.NONE, mvau_wwidth_max=MVAU_WWIDTH_MAX,
            **kw)
        devnull = open(os.devnull, "w")
        sys.stdout = sys.stderr = devnull  # FINN mirrors every print to the console it finds here
        try:
            rc = bd.build_dataflow_cfg(str(model_path), cfg)
        except Exception as e:  # FINN re-raises (see env.py workaround 4): one line for the user
            log = _keep_log(out_dir)
            raise UserError(f"FINN could not build {Path(model_path).name}: {_first_line(e)}; the model has "
                            f"layers FINN cannot map (see {log})") from None
        finally:
            devnull.close()
        if rc != 0:
            raise UserError(f"FINN build failed (exit {rc}); see {_keep_log(out_dir)}")


def _keep_log(out_dir: Path) -> Path:
    """Builds run in temp dirs that are removed on failure: keep the log beside them."""
    src = out_dir / "build_dataflow.log"
    dst = out_dir.parent / "failed_build.log"
    try:
        shutil.copy2(src, dst)
        return dst
    except OSError:
        return src


class FinnBuilder:
    """Estimate builds of one QONNX model for one target, cached by (model hash, target, fps)."""

    def __init__(self, model_path: str | Path, target: FinnTarget, max_util: float = DEFAULT_MAX_UTIL,
                 progress: Callable[[str], None] | None = None, root: Path | None = None) -> None:
        ok, why = is_qonnx(model_path)
        if not ok:
            raise UserError(f"{why}; pass a QONNX model written by `hw_prune quantize`")
        if not 0 < max_util <= 1:
            raise UserError(f"--max-util {max_util} must be in (0, 1]")
        self.model_path = Path(model_path).resolve()
        self.target = target
        self.max_util = max_util
        self.hash = file_hash(self.model_path)
        # the key names everything a cached build depends on besides the fps target
        self.dir = (root or cache_root()) / self.hash / f"{target.key()}_ww{MVAU_WWIDTH_MAX}_{CACHE_VERSION}"
        self.progress = progress or (lambda msg: None)
        self.builds: dict[int, BuildReport] = {}

    # -- one build -------------------------------------------------------------------------------
    def _base(self) -> Path:
        base = self.dir / "base"
        model = base / "intermediate_models" / f"{_SPECIALIZE}.onnx"
        if not model.is_file():
            self.progress(f"FINN: streamline + convert to HW layers ({self.target.finn_board})")
            tmp = Path(tempfile.mkdtemp(prefix=".base.", dir=self._mkdir()))
            try:
                _run_finn(self.model_path, tmp, self.target, estimate_steps(), None, stop_step=_SPECIALIZE)
                _prune_intermediates(tmp, keep=f"{_SPECIALIZE}.onnx")
                _publish(tmp, base)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return base

    def _mkdir(self) -> Path:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create FINN cache {self.dir}: {e.strerror}; set HW_PRUNE_CACHE to a "
                            "writable folder") from None
        return self.dir

    def build(self, target_fps: int) -> BuildReport:
        """Estimate build at `target_fps` (FINN picks PE/SIMD to reach it); cached."""
        target_fps = max(1, int(target_fps))
        if target_fps in self.builds:
            return self.builds[target_fps]
        out = self.dir / f"fps_{target_fps}"
        cached = (out / "report" / "estimate_network_performance.json").is_file()
        if not cached:
            base = self._base()
            self.progress(f"FINN: folding + estimates at target {target_fps} fps")
            tmp = Path(tempfile.mkdtemp(prefix=f".fps_{target_fps}.", dir=self._mkdir()))
            try:
                (tmp / "intermediate_models").mkdir()
                shutil.copy2(base / "intermediate_models" / f"{_SPECIALIZE}.onnx", tmp / "intermediate_models")
                _run_finn(self.model_path, tmp, self.target, estimate_steps(), target_fps, start_step=FOLDING_STEP)
                _prune_intermediates(tmp, keep="step_generate_estimate_reports.onnx")
                _publish(tmp, out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        rep = parse_reports(out / "report", self.target, self.max_util, target_fps)
        rep.cached = cached
        self.builds[target_fps] = rep
        return rep

    # -- search ----------------------------------------------------------------------------------
    def search_max_fps(self, coarse_ratio: float = 1.25, max_builds: int = 14
                       ) -> tuple[BuildReport, list[BuildReport]]:
        """Highest estimated fps whose design fits the part. Returns (best build, all builds tried).

        FINN's SetFolding gives, for a target T, the least-parallel design reaching >= T fps, so the
        designs form discrete levels and resources grow with T. Bisection (in log space) over T brackets
        the limit to `coarse_ratio`; then a build at (best fitting fps + 1) asks for the next faster
        level: if that does not fit, nothing faster does and the answer is exact. If even the most
        folded design does not fit, that design is returned with fits=False."""
        clock_hz = 1e9 / self.target.clock_ns
        best = self.build(1)                                # most folded: least resources
        tried = [best]
        if not best.fits:
            return best, tried
        top = self.build(int(clock_hz))                     # 1 cycle/frame: FINN's maximum unfolding
        tried.append(top)
        if top.fits:
            return top, tried
        lo, hi = max(1.0, best.estimated_fps), top.estimated_fps
        while len(tried) < max_builds:
            if hi / lo > coarse_ratio:
                t = int(math.sqrt(lo * hi))
            else:
                t = int(lo) + 1                             # the next faster folding level
            if t <= int(lo) or t >= hi or any(r.target_fps == t for r in tried):
                break
            rep = self.build(t)
            tried.append(rep)
            if rep.fits:
                if rep.estimated_fps > best.estimated_fps:
                    best = rep
                lo = max(lo, rep.estimated_fps)
            else:
                hi = float(t)
                if t == int(lo) + 1:
                    break                                   # next level does not fit: exact answer
        return best, tried

    # -- bitfile ---------------------------------------------------------------------------------
    def full_build(self, target_fps: int, out_dir: Path) -> Path:
        """Bitfile, PYNQ driver and deployment package (needs Vivado and Vitis HLS on PATH)."""
        if not have_vivado():
            raise UserError("a bitfile build needs Vivado and Vitis HLS on PATH (vivado, vitis_hls); "
                            "source Vivado's settings64.sh")
        import finn.builder.build_dataflow_config as bc

        outs = [bc.DataflowOutputType.ESTIMATE_REPORTS, bc.DataflowOutputType.STITCHED_IP,
                bc.DataflowOutputType.BITFILE, bc.DataflowOutputType.PYNQ_DRIVER,
                bc.DataflowOutputType.DEPLOYMENT_PACKAGE]
        self.progress(f"FINN: full build (HLS, stitched IP, bitfile, driver) at {target_fps} fps")
        _run_finn(self.model_path, out_dir, self.target, full_steps(), target_fps, outputs=outs)
        return out_dir


def _prune_intermediates(out: Path, keep: str) -> None:
    """Cache entries keep their reports, log and one model (the others are megabytes each)."""
    for f in (out / "intermediate_models").glob("*"):
        if f.name != keep:
            shutil.rmtree(f, ignore_errors=True) if f.is_dir() else f.unlink()


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished build into place; if another process got there first, keep theirs."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.exists():
            raise
