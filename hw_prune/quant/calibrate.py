"""Post-training calibration of activation scales (Brevitas calibration mode) and BN-statistics reuse."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from hw_prune.errors import UserError


@torch.no_grad()
def calibrate(qmodel: nn.Module, loader: DataLoader, batches: int = 8) -> int:
    """Run `batches` batches through `qmodel` in Brevitas calibration mode (activation ranges are
    collected with quantization off, then frozen). Returns the number of images seen."""
    from brevitas.graph.calibrate import calibration_mode

    if batches < 1:
        raise UserError(f"--calib-batches {batches} must be >= 1")
    seen = 0
    qmodel.eval()
    with calibration_mode(qmodel):
        for i, (x, _y) in enumerate(loader):
            if i >= batches:
                break
            qmodel(x)
            seen += len(x)
    if seen == 0:
        raise UserError("no calibration images: the training split is empty; use more data")
    qmodel.eval()
    return seen
