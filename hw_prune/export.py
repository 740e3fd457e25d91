"""ONNX export of a float PyTorch model (what onnxruntime, the board agent and FINN's tools consume)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from hw_prune.atomic import atomic_path

OPSET = 17


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, opset: int = OPSET) -> Path:
    """Export `model` at batch 1 with a dynamic batch axis; written atomically."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_shape[1:])
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(tmp), input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              opset_version=opset, dynamo=False)
    finally:
        model.train(was_training)
    return Path(path)
