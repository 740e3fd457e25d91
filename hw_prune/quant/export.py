"""QONNX export of a Brevitas model and a check that the exported graph computes what Brevitas does."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hw_prune.atomic import atomic_path
from hw_prune.errors import UserError

QONNX_OPS = ("Quant", "BipolarQuant", "BinaryQuant", "Trunc")


@dataclass
class ExportCheck:
    path: Path
    max_abs_diff: float       # max |QONNX - Brevitas| over the checked images (logits)
    rel_diff: float           # max_abs_diff / max |Brevitas logit|
    argmax_agree: float       # fraction of images whose top-1 class agrees
    images: int


def _quiet_export(qmodel: nn.Module, x: torch.Tensor, path: Path) -> None:
    import logging
    import os
    import sys

    from brevitas.export import export_qonnx

    # TorchScript export (dynamo=False): AdaptiveAvgPool2d(1) becomes GlobalAveragePool, which FINN
    # maps to hardware; the dynamo exporter writes ReduceMean, which FINN cannot place in the dataflow.
    devnull = open(os.devnull, "w")
    old_out = sys.stdout
    try:
        sys.stdout = devnull  # torch.onnx prints progress lines on stdout; --json must keep it clean
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_qonnx(qmodel, args=x, export_path=str(path), dynamo=False, opset_version=13)
    finally:
        sys.stdout = old_out
        devnull.close()


def execute_qonnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Run a QONNX graph with qonnx's reference executor (batch 1 per call)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(ModelWrapper(str(path)))
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    outs = [execute_onnx(model, {iname: x[i:i + 1].astype(np.float32)})[oname] for i in range(len(x))]
    return np.concatenate(outs, 0)


@torch.no_grad()
def export_checked(qmodel: nn.Module, input_shape: tuple[int, ...], path: str | Path,
                   sample: torch.Tensor | None = None) -> ExportCheck:
    """Export `qmodel` as QONNX (atomically) and compare qonnx execution with Brevitas on `sample`."""
    qmodel.eval()
    path = Path(path)
    x0 = torch.zeros(1, *input_shape[1:])
    with atomic_path(path) as tmp:
        _quiet_export(qmodel, x0, tmp)
        tmp_onnx = tmp  # checked before it replaces anything
        xs = sample if sample is not None else torch.randn(2, *input_shape[1:])
        ref = qmodel(xs).numpy()
        got = execute_qonnx(tmp_onnx, xs.numpy())
        if got.shape != ref.shape:
            raise UserError(f"QONNX output shape {got.shape} differs from Brevitas' {ref.shape}; "
                            "the model has an unsupported layer")
        diff = float(np.abs(got - ref).max())
        scale = float(np.abs(ref).max()) or 1.0
        agree = float((got.argmax(1) == ref.argmax(1)).mean())
    return ExportCheck(path, diff, diff / scale, agree, len(xs))


def is_qonnx(path: str | Path) -> tuple[bool, str]:
    """(True, '') if `path` is an ONNX file with QONNX quantizer nodes, else (False, why)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        return False, f"{p} does not exist"
    try:
        m = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf decode errors have many types
        return False, f"{p} is not an ONNX file ({type(e).__name__})"
    ops = {n.op_type for n in m.graph.node}
    if not ops & set(QONNX_OPS) and "MultiThreshold" not in ops:
        return False, f"{p} is an ONNX file without QONNX quantizers (no Quant nodes)"
    return True, ""
