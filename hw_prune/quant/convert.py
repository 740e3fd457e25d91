"""Float model -> Brevitas model, by replacing modules in a deep copy (the forward code is kept).

What is replaced, and why (FINN's streamlining is the consumer of the exported graph):
- Conv2d -> QuantConv2d, Linear -> QuantLinear (integer weights, `weight_bits`; per-output-channel
  scales, which streamlining folds into the next thresholds together with BatchNorm).
- ReLU / ReLU6 -> QuantReLU (`act_bits`, unsigned): each becomes a MultiThreshold in FINN.
- BatchNorm2d is KEPT after the quant conv, not folded into the weights: folding would put each
  channel's BN gain into the integer weights and widen their range; kept, FINN's streamlining merges
  BN's scale/shift with the conv's weight scale and absorbs them into the following MultiThreshold
  (the layout FINN's own cnv/mobilenet examples use).
- An 8-bit signed QuantIdentity is put in front of the network (FINN needs an integer input stream).
- Average pooling (AdaptiveAvgPool2d / AvgPool2d) is followed by a QuantReLU: the pooled mean of
  quantized post-ReLU values is not an integer; re-quantizing it (a no-op on non-negative values in
  float) gives FINN's GlobalAccPool + scale a MultiThreshold to be absorbed into.
- MaxPool commutes with quantization and is kept.
Residual adds (`a + b` in forward code) are exported as float Adds of differently scaled tensors:
Brevitas and QONNX run them, but FINN streamlining may not map them to hardware.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from hw_prune.errors import UserError


@dataclass(frozen=True)
class QuantConfig:
    weight_bits: int = 8
    act_bits: int = 8
    input_bits: int = 8
    per_channel: bool = True

    def check(self) -> "QuantConfig":
        for name, v in (("--weight-bits", self.weight_bits), ("--act-bits", self.act_bits),
                        ("input bits", self.input_bits)):
            if not isinstance(v, int) or not 2 <= v <= 8:
                raise UserError(f"{name} {v} is out of range; use an integer from 2 to 8 "
                                "(FINN maps activations of up to 8 bits to thresholds)")
        return self


class QuantModel(nn.Module):
    """Input quantizer + the converted network; `config` says how it was quantized."""

    def __init__(self, body: nn.Module, config: QuantConfig) -> None:
        super().__init__()
        import brevitas.nn as qnn

        self.config = config
        self.input_quant = qnn.QuantIdentity(bit_width=config.input_bits, return_quant_tensor=False)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_quant(x))


def _conv(m: nn.Conv2d, cfg: QuantConfig) -> nn.Module:
    import brevitas.nn as qnn

    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise UserError(f"Conv2d with padding {m.padding!r} / mode {m.padding_mode} is not supported for "
                        "quantization; use integer zero padding")
    q = qnn.QuantConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                        m.groups, bias=m.bias is not None, weight_bit_width=cfg.weight_bits,
                        weight_scaling_per_output_channel=cfg.per_channel)
    with torch.no_grad():
        q.weight.copy_(m.weight)
        if m.bias is not None:
            q.bias.copy_(m.bias)
    return q


def _linear(m: nn.Linear, cfg: QuantConfig) -> nn.Module:
    import brevitas.nn as qnn

    q = qnn.QuantLinear(m.in_features, m.out_features, bias=m.bias is not None,
                        weight_bit_width=cfg.weight_bits, weight_scaling_per_output_channel=cfg.per_channel)
    with torch.no_grad():
        q.weight.copy_(m.weight)
        if m.bias is not None:
            q.bias.copy_(m.bias)
    return q


def _relu(cfg: QuantConfig) -> nn.Module:
    import brevitas.nn as qnn

    return qnn.QuantReLU(bit_width=cfg.act_bits, return_quant_tensor=False)


_UNSUPPORTED = (nn.SiLU, nn.Hardswish, nn.GELU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU)


def _replace(parent: nn.Module, cfg: QuantConfig, memo: dict[int, nn.Module]) -> None:
    for name, child in list(parent.named_children()):
        if id(child) in memo:  # a module used twice (e.g. one ReLU per block) maps to one quant module
            setattr(parent, name, memo[id(child)])
            continue
        new: nn.Module | None = None
        if isinstance(child, nn.Conv2d):
            new = _conv(child, cfg)
        elif isinstance(child, nn.Linear):
            new = _linear(child, cfg)
        elif isinstance(child, (nn.ReLU, nn.ReLU6)):
            new = _relu(cfg)
        elif isinstance(child, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
            new = nn.Sequential(child, _relu(cfg))
        elif isinstance(child, _UNSUPPORTED):
            raise UserError(f"layer '{name}' ({type(child).__name__}) has no FINN-friendly quantized form; "
                            "use ReLU activations (FINN maps quantized ReLUs to thresholds)")
        elif isinstance(child, (nn.Conv1d, nn.Conv3d, nn.ConvTranspose2d)):
            raise UserError(f"layer '{name}' ({type(child).__name__}) is not supported; only Conv2d / Linear "
                            "networks can be quantized for FINN")
        else:
            _replace(child, cfg, memo)
            continue
        memo[id(child)] = new
        setattr(parent, name, new)


def to_brevitas(model: nn.Module, weight_bits: int = 8, act_bits: int = 8, per_channel: bool = True
                ) -> QuantModel:
    """A quantized copy of `model` (the float model is not changed). Call `calibrate` before use."""
    cfg = QuantConfig(weight_bits, act_bits, 8, per_channel).check()
    body = copy.deepcopy(model).cpu().eval()
    _replace(body, cfg, {})
    for m in body.modules():  # inplace ops would overwrite tensors Brevitas still reads
        if hasattr(m, "inplace"):
            m.inplace = False
    return QuantModel(body, cfg).eval()
