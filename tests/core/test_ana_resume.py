"""ana is resumable: a run killed mid-way continues and never recomputes finished cells."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, run_cli


def _cells(path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {(g, r): v for g, c in d["cells"].items() for r, v in c.items()}


def test_ana_killed_mid_run_resumes_without_recomputing(tmp_path) -> None:
    base = tmp_path / "base.pt"  # fixed weights so both runs analyse the same model
    r = run_cli("train", "--model", "resnet20", "--data", "synthetic:tiny", "--epochs", "1", "-o", base)
    assert r.returncode == 0, r.stderr
    ws = tmp_path / "ws"
    args = ["ana", "--model", str(base), "--data", "synthetic:tiny", "-w", str(ws), "--ratios", "0.25", "0.5",
            "0.75", "--val-images", "128", "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "hw_prune.cli", *args], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(_cells(ws / "ana.json")) < 6:
        assert proc.poll() is None, "ana finished before it could be killed; the test needs more cells"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = _cells(ws / "ana.json")
    assert 6 <= len(first) < 36, len(first)  # killed mid-run: 12 groups x 3 ratios were planned
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    d = res.json()
    assert d["complete"] and d["cells_cached"] == len(first) and d["cells_computed"] == 36 - len(first)
    final = _cells(ws / "ana.json")
    assert len(final) == 36
    for k, v in first.items():  # finished cells kept as they were (same run id, same value)
        assert final[k] == v
    runs = {v["run"] for v in final.values()}
    assert len(runs) == 2
    assert (ws / "ana.csv").read_text().count("\n") == 13 and (ws / "ana.png").stat().st_size > 1000
    # a third run has nothing to do
    again = run_cli(*args).json()
    assert again["cells_computed"] == 0 and again["cells_cached"] == 36
