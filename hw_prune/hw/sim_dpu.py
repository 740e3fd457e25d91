"""A simulated DPUCZDX8G-like accelerator: per-layer cycle model plus seeded measurement noise.

This file is shipped to boards by the SSH agent, so it imports only the stdlib and numpy and works on
plain dicts with the LayerSpec fields (op, cin, cout, kernel, stride, groups, h_in, w_in, h_out,
w_out, name); LayerSpec objects work too.

Model of one core (PG338 / UG1414 facts in DESIGN.md 3):
- conv engine: PP output pixels along the width x ICP input channels x OCP output channels per cycle,
  so a conv takes h_out * ceil(w_out/PP) * k*k * ceil(cin_g/ICP) * ceil(cout_g/OCP) * groups cycles
  (17 channels cost as much as 32 on B4096), slower by a fixed factor at stride > 1 (input fetch);
- depthwise conv, pooling and elementwise add run on the ALU at PP/2 pixels x ICP channels;
- FC runs on the conv engine as a 1x1 conv on one pixel (so it is weight-bandwidth bound);
- DDR traffic (int8 weights, input and output activations) against the core's bandwidth, which is
  the lower of its two 128-bit AXI ports and its share of effective DDR bandwidth (roofline: the
  layer takes the max of compute and memory time) plus a fixed instruction/pipeline cost per layer;
- per frame: DPU start-up cycles plus the host CPU's runner/copy cost (board's frame_overhead_ms).
The constants below are properties of the DPU design, shared by every board; boards differ only by
arch (PP/ICP/OCP), core count, clock, DDR and host, so nothing is tuned per board.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Iterable, Sequence

import numpy as np

AXI_BYTES_PER_CYCLE = 32.0     # two 128-bit AXI data ports per core
CONV_EFFICIENCY = 0.90         # conv engine pipeline utilisation (bubbles between tiles / rows)
ALU_EFFICIENCY = 0.90
STRIDE_PENALTY = 0.15          # extra compute time per unit of stride above 1 (input re-fetch)
LAYER_OVERHEAD_CYCLES = 2000   # instruction fetch, weight prologue, pipeline fill/drain per layer
FRAME_DPU_CYCLES = 60000       # per-frame DPU start, input/output DMA set-up
NOISE_SIGMA = 0.015            # run-to-run measurement noise (relative)

FIELDS = ("op", "cin", "cout", "kernel", "stride", "groups", "h_in", "w_in", "h_out", "w_out", "name")


def _f(spec: Any, key: str, default: Any = None) -> Any:
    if isinstance(spec, dict):
        return spec.get(key, default)
    return getattr(spec, key, default)


def _key(spec: Any) -> str:
    return "|".join(str(_f(spec, k, "")) for k in FIELDS[:-1])


class SimDPU:
    """Simulated DPU for one board. `params` is BoardSpec.sim_params() (a plain dict)."""

    def __init__(self, params: dict[str, Any], seed: int = 0) -> None:
        self.params = dict(params)
        self.seed = int(seed)
        self.pp = int(params["pp"])
        self.icp = int(params["icp"])
        self.ocp = int(params["ocp"])
        self.cores = int(params.get("cores", 1))
        self.clock_hz = float(params["clock_mhz"]) * 1e6
        self.ddr_bytes_s = float(params["ddr_gbps"]) * 1e9 * float(params.get("ddr_efficiency", 0.8))
        self.frame_overhead_ms = float(params.get("frame_overhead_ms", 0.0))
        self.cpu_threads = int(params.get("cpu_threads", 4))
        self._calls = 0

    # ---- noise-free model ------------------------------------------------------------------
    def _bytes_per_cycle(self, active_cores: int) -> float:
        share = self.ddr_bytes_s / max(1, active_cores) / self.clock_hz
        return min(AXI_BYTES_PER_CYCLE, share)

    def _compute_cycles(self, spec: Any) -> float:
        op = _f(spec, "op")
        cin, cout = int(_f(spec, "cin", 1)), int(_f(spec, "cout", 1))
        k, s, g = int(_f(spec, "kernel", 1)), int(_f(spec, "stride", 1)), max(1, int(_f(spec, "groups", 1)))
        ho, wo = int(_f(spec, "h_out", 1)), int(_f(spec, "w_out", 1))
        alu_pp = max(1, self.pp // 2)
        if op == "conv":
            tiles = g * math.ceil(cin // g / self.icp) * math.ceil(cout // g / self.ocp)
            cyc = ho * math.ceil(wo / self.pp) * k * k * tiles / CONV_EFFICIENCY
            return cyc * (1.0 + STRIDE_PENALTY * (s - 1))
        if op == "fc":
            return math.ceil(cin / self.icp) * math.ceil(cout / self.ocp) / CONV_EFFICIENCY
        if op in ("dwconv", "pool"):
            cyc = ho * math.ceil(wo / alu_pp) * k * k * math.ceil(cout / self.icp) / ALU_EFFICIENCY
            return cyc * (1.0 + STRIDE_PENALTY * (s - 1)) if op == "dwconv" else cyc
        if op == "add":
            return 2 * ho * math.ceil(wo / alu_pp) * math.ceil(cout / self.icp) / ALU_EFFICIENCY
        if op == "concat":
            return 0.0
        raise ValueError(f"unknown op '{op}'")

    @staticmethod
    def layer_bytes(spec: Any) -> float:
        """int8 DDR traffic of one layer: weights + input(s) + output."""
        op = _f(spec, "op")
        cin, cout = int(_f(spec, "cin", 1)), int(_f(spec, "cout", 1))
        k, g = int(_f(spec, "kernel", 1)), max(1, int(_f(spec, "groups", 1)))
        a_in = cin * int(_f(spec, "h_in", 1)) * int(_f(spec, "w_in", 1))
        a_out = cout * int(_f(spec, "h_out", 1)) * int(_f(spec, "w_out", 1))
        if op in ("conv", "dwconv"):
            return (cin // g) * cout * k * k + 4 * cout + a_in + a_out
        if op == "fc":
            return cin * cout + 4 * cout + cin + cout
        if op == "add":
            return 2 * a_in + a_out
        if op == "concat":
            return 2 * a_out
        return a_in + a_out  # pool

    def layer_cycles(self, spec: Any, active_cores: int = 1) -> float:
        """Cycles of one layer on one core (roofline of compute and memory, plus fixed overhead)."""
        mem = self.layer_bytes(spec) / self._bytes_per_cycle(active_cores)
        return max(self._compute_cycles(spec), mem) + LAYER_OVERHEAD_CYCLES

    def layer_ms(self, spec: Any, active_cores: int = 1) -> float:
        return self.layer_cycles(spec, active_cores) / self.clock_hz * 1e3

    def frame_ms(self) -> float:
        """Fixed per-frame cost: DPU start-up plus the host's runner call and copies."""
        return FRAME_DPU_CYCLES / self.clock_hz * 1e3 + self.frame_overhead_ms

    def model_ms(self, specs: Iterable[Any]) -> tuple[float, list[float]]:
        """Noise-free single-stream latency (ms) and the per-layer breakdown."""
        per = [self.layer_ms(s) for s in specs]
        return self.frame_ms() + sum(per), per

    def throughput_fps(self, specs: Sequence[Any]) -> float:
        """Frames/s with every core busy (one host thread per core at least): cores share DDR."""
        dpu_ms = FRAME_DPU_CYCLES / self.clock_hz * 1e3 + sum(self.layer_ms(s, self.cores) for s in specs)
        dpu_fps = self.cores * 1e3 / dpu_ms
        host_fps = self.cpu_threads * 1e3 / self.frame_overhead_ms if self.frame_overhead_ms > 0 else math.inf
        return min(dpu_fps, host_fps)

    # ---- noisy "measurements" --------------------------------------------------------------
    def _rng(self, tag: str) -> np.random.Generator:
        # seeded by the config itself so a measurement does not depend on what was measured before
        self._calls += 1
        tag = f"{self.params.get('board', '')}:{tag}"
        return np.random.default_rng([self.seed, zlib.crc32(tag.encode())])

    @staticmethod
    def _samples(rng: np.random.Generator, value: float, runs: int) -> np.ndarray:
        # mostly Gaussian jitter of ~1.5 %, plus rare positive outliers (interrupts, DDR refresh)
        x = value * (1.0 + rng.normal(0.0, NOISE_SIGMA, runs))
        spikes = rng.random(runs) < 0.03
        x[spikes] *= 1.0 + rng.uniform(0.03, 0.08, int(spikes.sum()))
        return np.maximum(x, value * 0.9)

    def measure_model(self, specs: Sequence[Any], runs: int = 50) -> dict[str, float]:
        specs = list(specs)
        runs = max(1, int(runs))
        total, _ = self.model_ms(specs)
        rng = self._rng("model:" + ";".join(_key(s) for s in specs))
        x = self._samples(rng, total, runs)
        med = float(np.median(x))
        fps_mt = self.throughput_fps(specs) * float(1.0 + rng.normal(0.0, NOISE_SIGMA / 3))
        return {"latency_ms": med, "p90_ms": float(np.percentile(x, 90)), "p99_ms": float(np.percentile(x, 99)),
                "fps": 1e3 / med, "fps_mt": fps_mt, "runs": runs}

    def measure_layers(self, specs: Sequence[Any], runs: int = 20) -> list[dict[str, float]]:
        runs = max(1, int(runs))
        out = []
        for s in specs:
            x = self._samples(self._rng("layer:" + _key(s)), self.layer_ms(s), runs)
            p10, p90 = np.percentile(x, [10, 90])
            out.append({"latency_ms": float(np.median(x)), "spread_ms": float((p90 - p10) / 2), "runs": runs})
        return out
