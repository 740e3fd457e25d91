"""Every workaround finn-plus 1.6.1 needs to run here, in one place (DESIGN.md §4).

`finn_session(build_root)` is a context manager; inside it `finn.builder` can be imported and run.
On exit the process is as it was: environment variables, sys.stdout / sys.stderr (FINN's builder
replaces them with its own loggers), the root logger's handlers and level, and warnings capture.

Workarounds (estimate-only flow, no Vivado / Vitis HLS installed):
1. FINN_BUILD_DIR must be set (FINN reads its settings from the environment once per process).
2. XILINX_VIVADO must name a path with a version in it (`.../Vivado/2024.2`): the builder parses the
   version after writing the reports, even when no Vivado step runs.
3. `finn.xsi.SimEngine` gets a placeholder before `finn.builder.build_dataflow` is imported: that import
   touches it, and finn.xsi would otherwise try to compile its simulator against Vivado's headers.
4. FINN logs errors and returns -1 unless PYTEST_CURRENT_TEST is set, in which case it re-raises; we
   set it during a build so that the caller gets the real exception and can turn it into one line.
With Vivado and Vitis HLS on PATH (`have_vivado()`), 2 and 3 are skipped: the real tools are used.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_PLACEHOLDER_VIVADO = "hw_prune-no-vivado/Vivado/2024.2"


def have_vivado() -> bool:
    """True when the tools for bitfile builds are present (vivado and vitis_hls on PATH)."""
    return bool(shutil.which("vivado") and shutil.which("vitis_hls"))


def _set_env(updates: dict[str, str]) -> dict[str, str | None]:
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    return saved


def _restore_env(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


_BUILD_DIR: Path | None = None


def _process_build_dir() -> Path:
    # FINN caches FINN_BUILD_DIR in its settings at first use, so one directory per process.
    global _BUILD_DIR
    if _BUILD_DIR is None:
        import atexit

        _BUILD_DIR = Path(tempfile.mkdtemp(prefix="hw_prune_finn_"))
        atexit.register(shutil.rmtree, _BUILD_DIR, True)
    return _BUILD_DIR


@contextmanager
def finn_session() -> Iterator[None]:
    """Apply the workarounds for the duration of the block and undo them afterwards."""
    real_tools = have_vivado()
    updates = {"FINN_BUILD_DIR": os.environ.get("FINN_BUILD_DIR") or str(_process_build_dir()),
               "PYTEST_CURRENT_TEST": os.environ.get("PYTEST_CURRENT_TEST") or "hw_prune finn build"}
    if not real_tools:
        updates["XILINX_VIVADO"] = str(Path(tempfile.gettempdir()) / _PLACEHOLDER_VIVADO)
    saved_all = dict(os.environ)  # FINN's imports also set variables (KMP_*): undo those too
    saved_env = _set_env(updates)
    saved_streams = (sys.stdout, sys.stderr)
    root = logging.getLogger()
    saved_log = (list(root.handlers), root.level)
    saved_showwarning = warnings.showwarning
    saved_filters = list(warnings.filters)
    try:
        if not real_tools:
            import finn.xsi

            if "SimEngine" not in vars(finn.xsi):  # hasattr() would trigger finn.xsi's auto-install
                finn.xsi.SimEngine = type("SimEngine", (), {"__doc__": "placeholder: no Vivado simulator"})
        yield
    finally:
        sys.stdout, sys.stderr = saved_streams
        for h in list(root.handlers):
            if h not in saved_log[0]:
                root.removeHandler(h)
                try:
                    h.close()
                except Exception:
                    pass
        for h in saved_log[0]:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(saved_log[1])
        logging.captureWarnings(False)
        warnings.showwarning = saved_showwarning
        warnings.filters[:] = saved_filters
        _restore_env(saved_env)
        for k in [k for k in os.environ if k not in saved_all]:
            del os.environ[k]
        for k, v in saved_all.items():
            if os.environ.get(k) != v:
                os.environ[k] = v
