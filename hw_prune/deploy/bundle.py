"""The deploy bundle: everything the board needs for one run, checksummed, uploaded by SFTP.

Contents (flat files in one directory): the exported ONNX model, the layer specs as JSON (for the
simulated DPU), agent.py and sim_dpu.py copied as plain files, an optional data sample (.npz with
`x` float32 NCHW as the model expects it, `y` labels, `x_u8` raw pixels for FINN), optional
backend artefacts (.xmodel for the DPU, FINN's deploy folder), and manifest.json with sha256 of
every file. The agent refuses to run if any checksum differs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import posixpath
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hw_prune.errors import RemoteError, UserError

FORMAT = "hw_prune-bundle/1"
AGENT_SRC = Path(__file__).with_name("agent.py")
SIM_SRC = Path(__file__).resolve().parents[1] / "hw" / "sim_dpu.py"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class LocalBundle:
    dir: Path
    manifest: dict[str, Any]
    files: list[str] = field(default_factory=list)   # relative names, manifest.json last

    @property
    def model_sha256(self) -> str:
        return self.manifest["files"][self.manifest["model"]]


def _safe_stem(name: str) -> str:
    # only '/' and NUL are impossible in a file name; everything else (spaces, ;, $, quotes) is kept on
    # purpose: the remote side must cope with it because every argument is quoted
    stem = Path(str(name)).name
    stem = stem[:-3] if stem.endswith(".pt") else stem
    stem = stem.replace("\x00", "").strip() or "model"
    return stem[:160]


def sample_from_splits(splits: Any, n: int) -> dict[str, np.ndarray]:
    """The first n validation images (normalised, as the model sees them), labels and raw uint8 pixels."""
    ds = splits.val
    n = max(1, min(int(n), len(ds)))
    if hasattr(ds, "x") and hasattr(ds, "y"):
        x = ds.x[:n].numpy().astype(np.float32)
        y = ds.y[:n].numpy().astype(np.int64)
    else:
        items = [ds[i] for i in range(n)]
        x = np.stack([np.asarray(a) for a, _ in items]).astype(np.float32)
        y = np.asarray([int(b) for _, b in items], dtype=np.int64)
    out = {"x": x, "y": y}
    mean, std = getattr(splits, "mean", None), getattr(splits, "std", None)
    if mean is not None and std is not None and len(mean) == x.shape[1]:
        m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
        out["x_u8"] = np.clip(np.round((x * s + m) * 255), 0, 255).astype(np.uint8)
    return out


def build_bundle(out_dir: str | Path, model: Any, input_shape: Sequence[int], name: str,
                 layer_specs: Sequence[dict[str, Any]] | None = None, sim_params: dict[str, Any] | None = None,
                 sample: dict[str, np.ndarray] | None = None, xmodel: str | Path | None = None,
                 finn_deploy: str | Path | None = None, onnx_path: str | Path | None = None,
                 extra: dict[str, Any] | None = None) -> LocalBundle:
    """Write the bundle into out_dir (created, must be empty or absent)."""
    from hw_prune.export import export_onnx

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    stem = _safe_stem(name)
    files: list[str] = []
    model_name = f"{stem}.onnx"
    if onnx_path is not None:
        shutil.copyfile(onnx_path, d / model_name)
    else:
        export_onnx(model, tuple(input_shape), d / model_name)
    files.append(model_name)
    for src, dst in ((AGENT_SRC, "agent.py"), (SIM_SRC, "sim_dpu.py")):
        if not src.is_file():
            raise UserError(f"{src} is missing from the hw_prune installation; reinstall hw_prune")
        shutil.copyfile(src, d / dst)
        files.append(dst)
    manifest: dict[str, Any] = {"format": FORMAT, "name": str(name), "model": model_name,
                                "input_shape": [int(v) for v in input_shape],
                                "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if layer_specs is not None:
        (d / "layers.json").write_text(json.dumps(list(layer_specs)))
        files.append("layers.json")
        manifest["layers_file"] = "layers.json"
    if sim_params is not None:
        manifest["sim"] = {"params": sim_params, "seed": 0}
    if sample is not None:
        np.savez(d / "sample.npz", **sample)
        files.append("sample.npz")
        manifest["sample"] = "sample.npz"
        manifest["sample_size"] = int(len(sample["y"]))
    if xmodel is not None:
        xp = Path(xmodel)
        if not xp.is_file():
            raise UserError(f"--xmodel {xp} does not exist; pass the .xmodel compiled by Vitis AI for this board")
        shutil.copyfile(xp, d / "model.xmodel")
        files.append("model.xmodel")
        manifest["xmodel"] = "model.xmodel"
    if finn_deploy is not None:
        fp = Path(finn_deploy)
        if not (fp / "driver").is_dir():
            raise UserError(f"--finn-deploy {fp} has no driver/ folder; pass FINN's deploy output "
                            "(bitfile/ and driver/)")
        shutil.copytree(fp, d / "finn", dirs_exist_ok=True)
        files += sorted(str(p.relative_to(d)) for p in (d / "finn").rglob("*") if p.is_file())
        manifest["finn_dir"] = "finn"
    manifest.update(extra or {})
    manifest["files"] = {f: sha256_file(d / f) for f in files}
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1))
    files.append("manifest.json")
    return LocalBundle(d, manifest, files)


def remote_run_dir(base: str, tag: str = "deploy") -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return posixpath.join(base, f"hw_prune-{tag}-{stamp}-{secrets.token_hex(3)}")


def upload_bundle(session: Any, bundle: LocalBundle, remote_dir: str) -> None:
    """mkdir -p remote_dir, then put every file (sub-folders created as needed)."""
    session.makedirs(remote_dir)
    made = {remote_dir}
    for f in bundle.files:
        rd = posixpath.dirname(posixpath.join(remote_dir, f))
        if rd not in made:
            session.makedirs(rd)
            made.add(rd)
        session.upload(bundle.dir / f, posixpath.join(remote_dir, f))


def agent_argv(python: str, remote_dir: str, cmd: str, backend: str, runs: int, timeout: float,
               extra: Sequence[str] = ()) -> list[str]:
    """The agent's command line as an argv list (the session quotes every element)."""
    return [python, posixpath.join(remote_dir, "agent.py"), cmd, "--bundle", remote_dir, "--backend", backend,
            "--runs", str(int(runs)), "--deadline", f"{max(1.0, timeout - 2):g}", *extra]


def parse_agent_output(code: int, out: str, err: str, where: str) -> dict[str, Any]:
    """The agent prints one JSON object as its last stdout line; anything else is a remote failure."""
    lines = [ln for ln in out.strip().splitlines() if ln.strip().startswith("{")]
    if not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1][:300]
        if code == 127 or "not found" in tail or "No such file" in tail:
            raise RemoteError(f"cannot start the agent on {where}: {tail}; pass --remote-python PATH to a Python 3.10+ "
                              "with numpy on the board")
        raise RemoteError(f"the agent on {where} failed (exit {code}): {tail}; check --remote-python (Python 3.10+ "
                          "with numpy)")
    try:
        res = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise RemoteError(f"the agent on {where} printed malformed JSON; check the board's Python (3.10+)") from None
    if not res.get("ok"):
        raise RemoteError(f"agent on {where}: {res.get('error', 'unknown failure')}")
    return res


def run_agent_local(bundle: LocalBundle, backend: str, runs: int, python: str | None = None, timeout: float = 600,
                    extra: Sequence[str] = ()) -> dict[str, Any]:
    """Run the same agent on this machine (the local reference for SSH results)."""
    import subprocess
    import sys

    argv = agent_argv(python or sys.executable, str(bundle.dir), "run", backend, runs, timeout, extra)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    return parse_agent_output(p.returncode, p.stdout, p.stderr, "this machine")
