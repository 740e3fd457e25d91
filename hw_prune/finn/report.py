"""Read FINN's estimate reports (report/*.json) into one BuildReport: fps, latency, per-layer cycles,
folding and LUT / BRAM / DSP / URAM totals against the part."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hw_prune.errors import UserError
from hw_prune.finn.target import FinnTarget

RESOURCES = (("luts", "LUT"), ("brams", "BRAM_18K"), ("dsps", "DSP"), ("urams", "URAM"))


@dataclass
class BuildReport:
    target_fps: float | None
    estimated_fps: float
    latency_ms: float
    max_cycles: int
    critical_path_cycles: int
    slowest_layer: str
    luts: float
    brams: float
    dsps: float
    urams: float
    fits: bool
    max_util: float
    utilization: dict[str, float]      # resource -> used / available
    layers: list[dict[str, Any]] = field(default_factory=list)
    report_dir: str = ""
    cached: bool = False

    def to_dict(self, layers: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not layers:
            d.pop("layers")
        return d

    def layer_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.layers)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"FINN report {path} is missing or unreadable ({e}); rerun the build") from None


def fits_part(totals: dict[str, float], target: FinnTarget, max_util: float) -> tuple[bool, dict[str, float]]:
    util: dict[str, float] = {}
    ok = True
    for key, _ in RESOURCES:
        cap = getattr(target, key)
        used = totals[key]
        util[key] = used / cap if cap else (0.0 if used == 0 else float("inf"))
        ok &= used <= max_util * cap
    return ok, util


def parse_reports(report_dir: str | Path, target: FinnTarget, max_util: float,
                  target_fps: float | None = None) -> BuildReport:
    rd = Path(report_dir)
    perf = _read(rd / "estimate_network_performance.json")
    cycles: dict[str, int] = _read(rd / "estimate_layer_cycles.json")
    res: dict[str, dict[str, Any]] = _read(rd / "estimate_layer_resources.json")
    folding_path = rd / "auto_folding_config.json"
    folding = _read(folding_path) if folding_path.is_file() else {}
    clock_hz = 1e9 / target.clock_ns
    layers = []
    totals = {k: 0.0 for k, _ in RESOURCES}
    for name, r in res.items():
        if name == "total" or not isinstance(r, dict):
            continue
        cyc = int(cycles.get(name, 0))
        fold = folding.get(name, {})
        row = {"layer": name, "op": re.sub(r"(_(hls|rtl))?_\d+$", "", name), "cycles": cyc,
               "fps_bound": clock_hz / cyc if cyc else float("inf"),
               "PE": fold.get("PE", ""), "SIMD": fold.get("SIMD", "")}
        for key, col in RESOURCES:
            v = float(r.get(col, 0) or 0)
            row[col] = v
            totals[key] += v
        layers.append(row)
    ok, util = fits_part(totals, target, max_util)
    max_cycles = int(perf["max_cycles"])
    return BuildReport(
        target_fps=target_fps, estimated_fps=float(perf["estimated_throughput_fps"]),
        latency_ms=float(perf.get("estimated_latency_ns", perf["critical_path_cycles"] * target.clock_ns)) / 1e6,
        max_cycles=max_cycles, critical_path_cycles=int(perf["critical_path_cycles"]),
        slowest_layer=str(perf.get("max_cycles_node_name", "")), fits=ok, max_util=max_util, utilization=util,
        layers=layers, report_dir=str(rd), **totals)


def resource_rows(rep: BuildReport, target: FinnTarget) -> list[dict[str, Any]]:
    """LUT / BRAM / DSP / URAM used vs the part (for the human table)."""
    rows = []
    for key, col in RESOURCES:
        cap = getattr(target, key)
        rows.append({"resource": col, "used": round(getattr(rep, key), 1), "available": cap,
                     "util %": round(100 * rep.utilization[key], 1) if cap else "-",
                     "limit %": round(100 * rep.max_util)})
    return rows
