"""Contracts between measurement backends, cost models and their users (profile, measure, search).

Backends measure; cost models predict from what was measured. Both speak LayerSpec
(hw_prune.layers) and return records that carry provenance (board, backend, versions, simulated).
Two kinds of target fit behind the same calls:
- sequential (DPU, CPU): model latency is the sum of layer latencies plus a per-frame cost;
- dataflow (FINN): throughput is set by the slowest layer and by whether the design fits the part.
Callers that decide widths should therefore use `ModelPrediction.fps`, not a sum of layer terms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

from torch import nn

from hw_prune.layers import LayerSpec


@dataclass
class ModelMeasurement:
    """A whole-model measurement at batch 1. Times in milliseconds."""

    latency_ms: float          # median single-stream latency
    p90_ms: float
    p99_ms: float
    fps: float                 # single-stream frames/s (1000 / latency_ms)
    fps_mt: float              # throughput using every core / thread of the target
    backend: str               # 'sim' | 'local' | 'ssh' | 'finn-estimate'
    simulated: bool
    board: str
    runs: int = 0
    per_layer_ms: dict[str, float] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LayerMeasurement:
    spec: LayerSpec
    latency_ms: float          # median
    spread_ms: float = 0.0     # (p90 - p10) / 2, or 0 when not measured repeatedly
    runs: int = 1


@runtime_checkable
class Backend(Protocol):
    """Something that can time models and single layers on one board."""

    name: str
    board: str
    simulated: bool

    def measure_model(self, model: nn.Module, input_shape: tuple[int, int, int, int],
                      runs: int = 50) -> ModelMeasurement: ...

    def measure_layers(self, specs: Sequence[LayerSpec], runs: int = 20) -> list[LayerMeasurement]:
        """Time many layers in one call (the ssh backend sends them as one batch)."""
        ...

    def provenance(self) -> dict[str, Any]: ...


@dataclass
class ModelPrediction:
    latency_ms: float
    fps: float                 # for dataflow targets: highest fps whose design fits the part
    per_layer_ms: list[float]  # aligned with the specs passed in (dataflow: per-layer cycle time)
    fits: bool = True          # dataflow targets: resources fit the part at `fps`


@runtime_checkable
class CostModel(Protocol):
    """Predicts latency from LayerSpecs; fitted from measurements only."""

    board: str
    backend: str
    alignment: int             # channel multiple the hardware rewards (1 = none found)

    def predict_layer(self, spec: LayerSpec) -> float: ...

    def predict_model(self, specs: Sequence[LayerSpec]) -> ModelPrediction: ...
