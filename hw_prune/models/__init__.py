"""Reference models, and resolving a `--model` argument (built-in name, saved file, or module:factory)."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from hw_prune.models.mobilenetv2 import MobileNetV2
from hw_prune.models.resnet import resnet18, resnet20, resnet50, resnet56
from hw_prune.models.small import DenseNetTiny, PlainCNN, ResNeXtTiny, VGGSmall

# name -> (factory(num_classes, small_input) -> module, one-line description)
BUILTINS: dict[str, tuple[Callable[[int, bool], nn.Module], str]] = {
    "resnet20": (lambda nc, small: resnet20(nc), "CIFAR ResNet-20 (16/32/64 ch, residual adds)"),
    "resnet56": (lambda nc, small: resnet56(nc), "CIFAR ResNet-56"),
    "resnet18": (lambda nc, small: resnet18(nc), "ImageNet-style ResNet-18 (7x7 stem)"),
    "resnet50": (lambda nc, small: resnet50(nc), "ImageNet-style ResNet-50 (bottlenecks)"),
    "mobilenetv2": (lambda nc, small: MobileNetV2(nc, 1.0, small), "MobileNetV2 1.0 (depthwise)"),
    "mobilenetv2-0.75": (lambda nc, small: MobileNetV2(nc, 0.75, small), "MobileNetV2 0.75"),
    "mobilenetv2-small": (lambda nc, small: MobileNetV2(nc, 0.5, small), "MobileNetV2 0.5"),
    "vgg-small": (lambda nc, small: VGGSmall(nc), "VGG-style 6-conv net"),
    "cnv-small": (lambda nc, small: PlainCNN((32, 64, 64), nc), "plain 3-conv CNN that FINN builds end to end"),
    "densenet-tiny": (lambda nc, small: DenseNetTiny(nc), "DenseNet-like (concatenation)"),
    "resnext-tiny": (lambda nc, small: ResNeXtTiny(nc), "ResNeXt-like (grouped 3x3 convs)"),
}


def builtin_names() -> list[str]:
    return sorted(BUILTINS)


def build_builtin(name: str, num_classes: int = 10, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> nn.Module:
    """Build a reference network; inputs of 64 px or less get CIFAR-style strides where the net has a choice."""
    from hw_prune.errors import UserError

    if name not in BUILTINS:
        raise UserError(f"unknown model '{name}'; built-in models: {', '.join(builtin_names())} "
                        "(or pass a file saved by hw_prune, or package.module:factory)")
    small = min(input_shape[-2:]) <= 64
    return BUILTINS[name][0](num_classes, small)


def describe_builtins() -> dict[str, str]:
    return {k: v[1] for k, v in sorted(BUILTINS.items())}


def __getattr__(name: str) -> Any:  # lazy re-export keeps `import hw_prune.models` light
    if name in ("load_model", "save_model", "ModelBundle"):
        from hw_prune.models import io

        return getattr(io, name)
    raise AttributeError(name)
