"""Shared test set-up: single-threaded torch (2-core CI), a CLI runner, and paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


class CliResult:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None,
            timeout: float = 900, input: str | None = None) -> CliResult:
    """Run `hw_prune ARGS` in a subprocess (the way a user does) and capture its output."""
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "hw_prune.cli", *map(str, args)], cwd=cwd or ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout, input=input)
    return CliResult(proc)


@pytest.fixture
def cli():
    return run_cli


def assert_user_error(res: CliResult, *needles: str) -> None:
    """Bad input: exit 2, one-line message, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    err_lines = [ln for ln in res.stderr.strip().splitlines() if "error" in ln]
    assert len(err_lines) == 1, res.stderr
    for n in needles:
        assert n.lower() in res.stderr.lower(), (n, res.stderr)
