"""Where a result came from: attached to every measurement, plan and report."""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata
from typing import Any

import hw_prune

_PACKAGES = ("torch", "torch-pruning", "onnxruntime", "onnx", "brevitas", "qonnx", "finn-plus", "numpy")


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    out: dict[str, str] = {"hw_prune": hw_prune.__version__, "python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def provenance(board: str | None = None, backend: str | None = None, simulated: bool | None = None,
               **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "board": board,
        "backend": backend,
        "simulated": simulated,
        "host_machine": platform.node(),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
    }
    rec.update(extra)
    return rec
