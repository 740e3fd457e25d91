"""Save / reload a quantized model: the float model file (hw_prune format) plus the Brevitas state.

The quantized state rides in the model file's metadata (`meta['quant']`), so the file stays a valid
hw_prune model (float weights) and `load_quantized` rebuilds the exact Brevitas model from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hw_prune.errors import UserError
from hw_prune.models.io import ModelBundle, load_model, save_model
from hw_prune.quant.convert import QuantModel, to_brevitas


def save_quantized(bundle: ModelBundle, qmodel: QuantModel, path: str | Path, **meta: Any) -> Path:
    cfg = qmodel.config
    quant = {"weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits, "input_bits": cfg.input_bits,
             "per_channel": cfg.per_channel,
             "state_dict": {k: v.detach().cpu() for k, v in qmodel.state_dict().items()}}
    return save_model(bundle, path, quant=quant, **meta)


def load_quantized(path: str | Path) -> tuple[QuantModel, ModelBundle]:
    bundle = load_model(str(path))
    q = bundle.meta.get("quant")
    if not isinstance(q, dict) or "state_dict" not in q:
        raise UserError(f"{path} holds no quantized state; write it with `hw_prune quantize`")
    qmodel = to_brevitas(bundle.model, q["weight_bits"], q["act_bits"], q.get("per_channel", True))
    try:
        qmodel.load_state_dict(q["state_dict"])
    except RuntimeError as e:
        raise UserError(f"quantized state in {path} does not fit: {str(e).splitlines()[0]}") from None
    return qmodel.eval(), bundle


__all__ = ["save_quantized", "load_quantized"]
