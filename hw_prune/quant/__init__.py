"""Brevitas quantization of dense float models, PTQ calibration / QAT, and QONNX export + check.

`to_brevitas(model, weight_bits, act_bits)` -> quantized copy; `calibrate(qmodel, loader, batches)`;
`export_checked(qmodel, input_shape, path, sample)` -> QONNX file + max abs diff against Brevitas.
"""

import warnings

# brevitas warns on import that an optional CUDA kernel package is absent; nothing here uses it
warnings.filterwarnings("ignore", message="fast_hadamard_transform")

from hw_prune.quant.convert import QuantConfig, to_brevitas
from hw_prune.quant.calibrate import calibrate
from hw_prune.quant.export import ExportCheck, export_checked, is_qonnx
from hw_prune.quant.store import load_quantized, save_quantized

__all__ = ["QuantConfig", "to_brevitas", "calibrate", "ExportCheck", "export_checked", "is_qonnx",
           "load_quantized", "save_quantized"]
