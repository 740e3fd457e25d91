"""Small CNNs for the FINN tests (importable as tests.finn.nets:tiny_cnn by `--model`)."""

from __future__ import annotations

from typing import Sequence

from hw_prune.models.small import PlainCNN, VGGSmall


def tiny_cnn(widths: Sequence[int] = (16, 32, 32), num_classes: int = 10) -> VGGSmall:
    return PlainCNN(tuple(widths), num_classes)


def prime_cnn() -> VGGSmall:
    """37 channels (prime): FINN's folding can only use parallelism 1 or 37 on it."""
    return PlainCNN((37, 37, 37))
