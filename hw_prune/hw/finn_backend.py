"""FINN as a pruning target: the `finn-estimate` backend and a dataflow cost model.

A FINN design is a pipeline: it runs at the speed of its slowest layer, and FINN can buy speed with
parallelism (PE/SIMD) until the part is full. So the cost of a set of widths is the highest fps whose
design fits the part (`ModelPrediction.fps`), found by estimate builds (hw_prune.finn.FinnBuilder).
Every number here is an ESTIMATE from FINN's analytical models (simulated=True), never a measurement.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from hw_prune.atomic import write_json
from hw_prune.hw.interfaces import LayerMeasurement, ModelMeasurement, ModelPrediction
from hw_prune.layers import LayerSpec
from hw_prune.provenance import provenance

NAME = "finn-estimate"


def _qonnx_for(model: nn.Module, input_shape: tuple[int, ...], weight_bits: int, act_bits: int,
               path: Path) -> Path:
    """Quantize with Brevitas (calibrated on fixed random inputs: resources depend on shapes and bits,
    not on the calibration data) and export QONNX."""
    from hw_prune.quant import calibrate, export_checked, to_brevitas

    q = to_brevitas(model, weight_bits, act_bits)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, *input_shape[1:], generator=g), None) for _ in range(2)]
    calibrate(q, batches, batches=2)  # type: ignore[arg-type]
    export_checked(q, input_shape, path, torch.randn(1, *input_shape[1:], generator=g))
    return path


class _Finn:
    """Shared: board -> FinnTarget, quantization settings, search."""

    def __init__(self, board: Any, weight_bits: int = 4, act_bits: int = 4, max_util: float | None = None,
                 clock_ns: float | None = None, progress: Any = None) -> None:
        from hw_prune.finn import DEFAULT_MAX_UTIL, finn_target

        self.target = finn_target(board, clock_ns)
        self.board = self.target.board
        self.weight_bits, self.act_bits = int(weight_bits), int(act_bits)
        self.max_util = float(max_util if max_util is not None else DEFAULT_MAX_UTIL)
        self.progress = progress

    @contextlib.contextmanager
    def _builder(self, model: nn.Module, input_shape: tuple[int, ...]) -> Iterator[Any]:
        """A FinnBuilder over `model` quantized and exported once (to a temporary QONNX file)."""
        from hw_prune.finn import FinnBuilder

        with tempfile.TemporaryDirectory(prefix="hw_prune_finn_q_") as td:
            path = _qonnx_for(model, input_shape, self.weight_bits, self.act_bits, Path(td) / "model.onnx")
            yield FinnBuilder(path, self.target, self.max_util, progress=self.progress)

    def _search(self, model: nn.Module, input_shape: tuple[int, ...]) -> Any:
        with self._builder(model, input_shape) as builder:
            return builder.search_max_fps()[0]

    def provenance(self) -> dict[str, Any]:
        return provenance(self.board, NAME, True, part=self.target.part, clock_ns=self.target.clock_ns,
                          weight_bits=self.weight_bits, act_bits=self.act_bits, max_util=self.max_util,
                          note="FINN analytical estimates (estimate-only build_dataflow), not a measurement")


def _layer_times(report: Any, specs: Sequence[LayerSpec], clock_ns: float) -> list[float]:
    """FINN's per-layer cycles (ms) aligned with `specs`: MAC layers <- MVAU/VVAU in order, pools <- Pool."""
    macs = [r for r in report.layers if r["op"].startswith(("MVAU", "VVAU"))]
    pools = [r for r in report.layers if r["op"].startswith(("Pool", "GlobalAccPool"))]
    out = []
    for s in specs:
        src = macs if s.op in ("conv", "dwconv", "fc") else pools if s.op == "pool" else []
        out.append(src.pop(0)["cycles"] * clock_ns / 1e6 if src else 0.0)
    return out


class FinnEstimateBackend(_Finn):
    """Backend protocol over FINN estimate builds. `measure_model` quantizes the model itself."""

    name = NAME
    simulated = True

    def measure_model(self, model: nn.Module, input_shape: tuple[int, int, int, int],
                      runs: int = 50) -> ModelMeasurement:
        rep = self._search(model, input_shape)
        fps = rep.estimated_fps if rep.fits else 0.0
        per_layer = {r["layer"]: r["cycles"] * self.target.clock_ns / 1e6 for r in rep.layers}
        return ModelMeasurement(latency_ms=rep.latency_ms, p90_ms=rep.latency_ms, p99_ms=rep.latency_ms,
                                fps=fps, fps_mt=fps, backend=NAME, simulated=True, board=self.board, runs=0,
                                per_layer_ms=per_layer,
                                provenance={**self.provenance(), "fits": rep.fits, "luts": rep.luts,
                                            "brams": rep.brams, "dsps": rep.dsps,
                                            "slowest_layer": rep.slowest_layer})

    def estimate(self, model: nn.Module, input_shape: tuple[int, ...], target_fps: float,
                 search: bool = True) -> tuple[Any, Any]:
        """FINN estimate builds of `model` (quantized once): (the build at `target_fps`, the highest-fps
        build that fits, or None when search=False). Both are hw_prune.finn.BuildReport (ESTIMATES)."""
        with self._builder(model, input_shape) as builder:
            at = builder.build(max(1, int(math.ceil(target_fps))))
            best = builder.search_max_fps()[0] if search else None
        return at, best

    def measure_layers(self, specs: Sequence[LayerSpec], runs: int = 20) -> list[LayerMeasurement]:
        """Each layer alone: its cycle time (ms) in the fastest single-layer design that fits."""
        cm = FinnDataflowCostModel(self.board, self.weight_bits, self.act_bits, self.max_util,
                                   self.target.clock_ns, self.progress)
        return [LayerMeasurement(s, cm.predict_layer(s), 0.0, 1) for s in specs]


class FinnDataflowCostModel(_Finn):
    """CostModel protocol for FINN: `predict_model(specs).fps` is the highest fps whose design (a plain
    CNN rebuilt from the specs, see hw_prune.finn.proxy) fits the part. Results are cached in memory and
    on disk by (layer configuration, bits, target)."""

    backend = NAME
    # FINN folds a layer by PE | channels and SIMD | inputs, and SetFolding only tries divisors: widths
    # that are multiples of 8 offer parallelism 1, 2, 4, 8, ... while a prime width offers only 1 or itself.
    alignment = 8

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._mem: dict[str, ModelPrediction] = {}

    def _key(self, specs: Sequence[LayerSpec]) -> str:
        blob = json.dumps([list(s.key()) for s in specs] + [self.weight_bits, self.act_bits, self.max_util,
                                                             self.target.key()])
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def _disk(self, key: str) -> Path:
        from hw_prune.finn import cache_root

        return cache_root() / "costmodel" / f"{key}.json"

    def predict_model(self, specs: Sequence[LayerSpec]) -> ModelPrediction:
        from hw_prune.finn.proxy import proxy_network

        specs = list(specs)
        key = self._key(specs)
        if key in self._mem:
            return self._mem[key]
        path = self._disk(key)
        if path.is_file():
            try:
                pred = ModelPrediction(**json.loads(path.read_text()))
                self._mem[key] = pred
                return pred
            except (ValueError, TypeError):
                pass  # a corrupt cache entry is rebuilt
        net, shape = proxy_network(specs)
        rep = self._search(net, shape)
        fps = rep.estimated_fps if rep.fits else 0.0
        pred = ModelPrediction(latency_ms=rep.latency_ms, fps=fps,
                               per_layer_ms=_layer_times(rep, specs, self.target.clock_ns), fits=rep.fits)
        self._mem[key] = pred
        try:
            write_json(path, {"latency_ms": pred.latency_ms, "fps": pred.fps, "per_layer_ms": pred.per_layer_ms,
                              "fits": pred.fits})
        except Exception:  # the cache is an optimisation only
            pass
        return pred

    def predict_layer(self, spec: LayerSpec) -> float:
        """Cycle time (ms) of this layer alone in its fastest fitting single-layer design."""
        if spec.op not in ("conv", "dwconv", "fc"):
            return 0.0
        pred = self.predict_model([spec])
        return max(pred.per_layer_ms) if pred.per_layer_ms else 0.0


__all__ = ["FinnEstimateBackend", "FinnDataflowCostModel"]
