"""Saving and loading models without pickled code.

A saved file is a plain dict read with `torch.load(weights_only=True)`: how to build the network
(built-in name or `package.module:factory`), the shapes of every Conv/Linear/BatchNorm (pruned
models differ from their factory), the state_dict, and metadata (plan, accuracy, provenance).
Loading builds the factory model, resizes those layers to the recorded shapes, then loads weights.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hw_prune.atomic import atomic_path
from hw_prune.errors import UserError
from hw_prune.models import BUILTINS, build_builtin

FORMAT = "hw_prune-model/1"


@dataclass
class ModelBundle:
    """A network plus how to rebuild it. `source` is {'kind': 'builtin'|'import', 'name': str}."""

    model: nn.Module
    source: dict[str, Any]
    input_shape: tuple[int, int, int, int] = (1, 3, 32, 32)
    num_classes: int = 10
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.source.get("name", "model"))


def parse_input_shape(text: str | tuple | list | None, default: tuple[int, int, int, int] = (1, 3, 32, 32)
                      ) -> tuple[int, int, int, int]:
    if text is None:
        return default
    try:
        dims = tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise UserError(f"--input-shape '{text}' is not a list of integers; use e.g. 1,3,32,32") from None
    if len(dims) != 4 or min(dims) < 1:
        raise UserError(f"--input-shape '{text}' must be N,C,H,W with positive sizes, e.g. 1,3,32,32")
    return dims  # type: ignore[return-value]


def _import_factory(ref: str) -> Any:
    if ":" not in ref:
        raise UserError(f"'{ref}' is not package.module:factory")
    mod_name, attr = ref.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserError(f"cannot import module '{mod_name}' for --model {ref}: {e}; "
                        "check PYTHONPATH or the module name") from None
    fn = getattr(mod, attr, None)
    if fn is None or not callable(fn):
        raise UserError(f"module '{mod_name}' has no callable '{attr}' for --model {ref}")
    return fn


def _build_from_source(source: dict[str, Any], num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    if source["kind"] == "builtin":
        return build_builtin(source["name"], num_classes, input_shape)
    fn = _import_factory(source["name"])
    try:
        return fn(**source.get("kwargs", {})) if source.get("kwargs") else fn()
    except TypeError as e:
        raise UserError(f"factory {source['name']} could not be called without arguments: {e}") from None


def _layer_shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    shapes: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            shapes[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            shapes[name] = {"in": m.in_features, "out": m.out_features}
        elif isinstance(m, nn.BatchNorm2d):
            shapes[name] = {"out": m.num_features}
    return shapes


def _resize_layers(model: nn.Module, shapes: dict[str, dict[str, int]]) -> None:
    """Give each recorded layer its saved channel counts (weights are loaded afterwards)."""
    for name, m in list(model.named_modules()):
        s = shapes.get(name)
        if s is None:
            continue
        if isinstance(m, nn.Conv2d):
            m.in_channels, m.out_channels, m.groups = s["in"], s["out"], s["groups"]
            m.weight = nn.Parameter(torch.empty(s["out"], s["in"] // s["groups"], *m.kernel_size))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.empty(s["out"]))
        elif isinstance(m, nn.Linear):
            m.in_features, m.out_features = s["in"], s["out"]
            m.weight = nn.Parameter(torch.empty(s["out"], s["in"]))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.empty(s["out"]))
        elif isinstance(m, nn.BatchNorm2d):
            n = s["out"]
            m.num_features = n
            if m.affine:
                m.weight, m.bias = nn.Parameter(torch.ones(n)), nn.Parameter(torch.zeros(n))
            if m.track_running_stats:
                m.running_mean, m.running_var = torch.zeros(n), torch.ones(n)


def save_model(bundle: ModelBundle, path: str | Path, **meta: Any) -> Path:
    """Atomically save `bundle` (plus extra metadata) to `path`."""
    payload = {
        "format": FORMAT,
        "source": bundle.source,
        "input_shape": list(bundle.input_shape),
        "num_classes": bundle.num_classes,
        "layer_shapes": _layer_shapes(bundle.model),
        "state_dict": {k: v.detach().cpu() for k, v in bundle.model.state_dict().items()},
        "meta": {**bundle.meta, **meta},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _load_file(path: Path) -> ModelBundle:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip, pickle with code, truncated file...
        raise UserError(f"cannot read model file {path}: {str(e).splitlines()[0][:160]}; "
                        "pass a file written by hw_prune (or a state_dict with --weights)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a model saved by hw_prune; pass a built-in name, a hw_prune file, "
                        "or package.module:factory with --weights")
    shape = tuple(payload["input_shape"])
    model = _build_from_source(payload["source"], payload["num_classes"], shape)
    _resize_layers(model, payload["layer_shapes"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise UserError(f"weights in {path} do not fit the network: {str(e).splitlines()[0]}") from None
    return ModelBundle(model, payload["source"], shape, payload["num_classes"], payload.get("meta", {}))


def load_weights(model: nn.Module, weights: str | Path) -> None:
    p = Path(weights)
    if not p.is_file():
        raise UserError(f"weights file {p} does not exist")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read weights {p}: {str(e).splitlines()[0][:160]}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if isinstance(sd, dict) and sd.get("format") == FORMAT:
        sd = sd["state_dict"]
    try:
        model.load_state_dict(sd)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"weights {p} do not match the model: {str(e).splitlines()[0]}") from None


def load_model(spec: str, weights: str | None = None, num_classes: int | None = None,
               input_shape: tuple[int, int, int, int] | None = None) -> ModelBundle:
    """Resolve `--model`: a built-in name, a file saved by hw_prune, or `package.module:factory`."""
    shape = input_shape or (1, 3, 32, 32)
    p = Path(spec)
    if spec in BUILTINS:
        nc = num_classes or (10 if min(shape[-2:]) <= 64 else 1000)
        bundle = ModelBundle(build_builtin(spec, nc, shape), {"kind": "builtin", "name": spec}, shape, nc)
    elif p.suffix in (".pt", ".pth") or p.exists():
        if not p.is_file():
            raise UserError(f"model file {p} does not exist; check the path")
        bundle = _load_file(p)
        if input_shape is not None and tuple(input_shape[1:]) != tuple(bundle.input_shape[1:]):
            bundle.input_shape = input_shape  # fully convolutional nets may run at another size
    elif ":" in spec:
        model = _build_from_source({"kind": "import", "name": spec}, 0, shape)
        if not isinstance(model, nn.Module):
            raise UserError(f"factory {spec} returned {type(model).__name__}, not a torch.nn.Module")
        bundle = ModelBundle(model, {"kind": "import", "name": spec}, shape, _guess_classes(model))
    else:
        build_builtin(spec)  # raises the 'unknown model' error listing built-ins
        raise AssertionError
    if weights:
        load_weights(bundle.model, weights)
    check_input_shape(bundle)
    return bundle


def _guess_classes(model: nn.Module) -> int:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else 0


def check_input_shape(bundle: ModelBundle) -> torch.Tensor:
    """Run one forward pass at the declared input shape; a mismatch becomes a UserError."""
    bundle.model.eval()
    try:
        with torch.no_grad():
            return bundle.model(torch.zeros(1, *bundle.input_shape[1:]))
    except RuntimeError as e:
        raise UserError(f"model '{bundle.name}' does not accept input shape "
                        f"{','.join(map(str, bundle.input_shape))}: {str(e).splitlines()[0][:160]}; "
                        "fix --input-shape") from None
