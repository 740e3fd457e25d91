"""The on-board agent run locally: checksum verification, numpy-only import, clean errors for absent runtimes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hw_prune.deploy.bundle import build_bundle, run_agent_local
from hw_prune.errors import RemoteError
from hw_prune.hw.boards import load_board
from hw_prune.layers import extract_layer_specs
from hw_prune.models import build_builtin


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    model = build_builtin("vgg-small", 10, (1, 3, 32, 32))
    specs = [s.to_dict() for s in extract_layer_specs(model, (1, 3, 32, 32))]
    rng = np.random.default_rng(0)
    sample = {"x": rng.standard_normal((16, 3, 32, 32)).astype(np.float32), "y": rng.integers(0, 10, 16)}
    d = tmp_path_factory.mktemp("bundle") / "b"
    return build_bundle(d, model, (1, 3, 32, 32), "vgg-small", layer_specs=specs,
                        sim_params=load_board("zcu104").sim_params(), sample=sample)


def test_manifest_lists_every_file_with_its_checksum(bundle):
    import hashlib

    m = json.loads((bundle.dir / "manifest.json").read_text())
    assert set(m["files"]) == {"vgg-small.onnx", "agent.py", "sim_dpu.py", "layers.json", "sample.npz"}
    for name, digest in m["files"].items():
        assert hashlib.sha256((bundle.dir / name).read_bytes()).hexdigest() == digest


def test_agent_runs_with_numpy_only(bundle, tmp_path):
    """The agent and the simulator import nothing beyond the stdlib and numpy (what a board has)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import importlib.abc, runpy, sys\n"
        "BLOCKED = ('torch', 'onnx', 'onnxruntime', 'hw_prune', 'pandas', 'paramiko', 'yaml', 'pydantic')\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "agent = sys.argv[1] + '/agent.py'\n"
        "sys.argv = [agent, 'run', '--bundle', sys.argv[1], '--backend', 'sim', '--runs', '5']\n"
        "runpy.run_path(agent, run_name='__main__')\n")
    p = subprocess.run([sys.executable, str(probe), str(bundle.dir)], capture_output=True, text=True, timeout=120)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["ok"] is True and out["simulated"] is True and out["fps"] > 0, out
    assert out["top1"] is None and "unavailable" in out["top1_backend"]  # no onnxruntime: said, not faked


def test_tampered_bundle_is_refused(bundle, tmp_path):
    import shutil

    from hw_prune.deploy.bundle import LocalBundle

    d = tmp_path / "copy"
    shutil.copytree(bundle.dir, d)
    with open(d / "layers.json", "a") as f:
        f.write(" ")
    with pytest.raises(RemoteError, match="layers.json checksum mismatch"):
        run_agent_local(LocalBundle(d, bundle.manifest), "sim", 5)


def test_hardware_backends_fail_cleanly_without_their_runtime(bundle):
    with pytest.raises(RemoteError, match="needs pynq_dpu on the board"):
        run_agent_local(bundle, "dpu", 5)
    with pytest.raises(RemoteError, match="--finn-deploy"):
        run_agent_local(bundle, "finn", 5)


def test_info_reports_versions():
    from hw_prune.deploy.bundle import AGENT_SRC

    p = subprocess.run([sys.executable, str(AGENT_SRC), "info"], capture_output=True, text=True, timeout=60)
    info = json.loads(p.stdout)
    assert info["ok"] and info["versions"]["numpy"] == np.__version__ and info["available"]["onnxruntime"] is True
