"""Build-step lists for finn-plus' `build_dataflow`, plus the one custom step hw_prune needs.

finn-plus' own steps already lower convs (step_streamline: LowerConvsToMatMul, MakeMaxPoolNHWC, ...)
and convert to HW layers. What they miss for CNNs with global average pooling: step_convert_to_hw turns
MultiThresholds into Thresholding layers BEFORE it turns GlobalAveragePool into GlobalAccPool + a scalar
Mul, so that Mul is left stranded between hardware layers and the dataflow partition fails.
`step_hwp_global_pool` runs right after streamlining: it converts the pool first, then absorbs the
Mul into the following MultiThreshold (and clips thresholds to the now unsigned integer input).
"""

from __future__ import annotations

from typing import Any, Callable


def step_hwp_global_pool(model: Any, cfg: Any) -> Any:
    """GlobalAveragePool -> GlobalAccPool + Mul, with the Mul absorbed into the next MultiThreshold."""
    if not model.get_nodes_by_op_type("GlobalAveragePool"):
        return model
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.fpgadataflow.convert_to_hw.global_acc_pool import InferGlobalAccPoolLayer
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.general import GiveUniqueNodeNames
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    model = model.transform(InferDataLayouts())
    model = model.transform(InferGlobalAccPoolLayer())
    model = model.transform(InferShapes())
    model = model.transform(InferDataTypes())
    model = model.transform(Streamline())
    model = model.transform(absorb.AbsorbMulIntoMultiThreshold())
    model = model.transform(absorb.AbsorbTransposeIntoMultiThreshold())
    model = model.transform(absorb.AbsorbConsecutiveTransposes())
    model = model.transform(InferDataTypes())
    model = model.transform(RoundAndClipThresholds())
    model = model.transform(InferDataLayouts())
    return model.transform(GiveUniqueNodeNames())


# Steps before folding do not depend on the target fps: a search runs them once and restarts from here.
FOLDING_STEP = "step_target_fps_parallelization"


def estimate_steps() -> list[str | Callable]:
    from finn.builder.build_dataflow_config import estimate_only_dataflow_steps

    steps: list[str | Callable] = list(estimate_only_dataflow_steps)
    steps.insert(steps.index("step_streamline") + 1, step_hwp_global_pool)
    return steps


def full_steps() -> list[str | Callable]:
    """Estimate steps, then HW generation, stitched IP, bitfile, driver, deployment package (needs Vivado)."""
    from finn.builder.build_dataflow_config import default_build_dataflow_steps

    steps: list[str | Callable] = list(default_build_dataflow_steps)
    steps.insert(steps.index("step_streamline") + 1, step_hwp_global_pool)
    return steps
