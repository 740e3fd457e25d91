"""The `ssh` measurement backend: models and layer sweeps timed by the on-board agent over SSH.

- measure_model: one deploy bundle (ONNX + layer specs), one agent run.
- measure_layers: unique layers are sent in batches (one upload + one agent call per batch, not one
  round trip per layer). Every finished batch is appended to a local cache at once, so a dropped
  connection loses at most the batches in flight and a rerun resumes. With several hosts of one
  kind, batches are dealt round-robin to one thread per host; a host that fails leaves its batches
  to the others (work stealing), and whatever is left is reported.
Agent backends: `sim` (simulated DPU on the board, simulated=True) and `onnxruntime` (the board's CPU).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from hw_prune.deploy.bundle import (LocalBundle, agent_argv, build_bundle, parse_agent_output, remote_run_dir,
                                    upload_bundle)
from hw_prune.deploy.remote import SSHOptions, run_bundle_remote
from hw_prune.deploy.session import HostSpec, SSHSession, parse_host
from hw_prune.errors import RemoteError, UserError
from hw_prune.hw.boards import BoardSpec, load_board
from hw_prune.hw.interfaces import LayerMeasurement, ModelMeasurement
from hw_prune.layers import LayerSpec, extract_layer_specs
from hw_prune.provenance import provenance

AGENT_BACKENDS = ("sim", "onnxruntime")
CACHE_VERSION = 1


def _cache_root() -> Path:
    return Path(os.environ.get("HW_PRUNE_CACHE") or Path.home() / ".cache" / "hw_prune") / "ssh_layers"


def _split_hosts(hosts: Sequence[str] | str) -> list[str]:
    items = [hosts] if isinstance(hosts, str) else list(hosts or [])
    return [h.strip() for item in items for h in str(item).split(",") if h.strip()]


class SSHBackend:
    """Backend protocol (hw_prune.hw.interfaces.Backend) over SSH to one or more boards of one kind."""

    name = "ssh"

    def __init__(self, board: BoardSpec | str, hosts: Sequence[str] | str | None = None, key: str | None = None,
                 known_hosts: str | None = None, trust_new_host: bool = False, remote_python: str | None = None,
                 agent_backend: str = "sim", remote_dir: str | None = None, timeout: float = 600.0,
                 batch_size: int = 48, warmup: int = 5, cache_dir: str | Path | None = None, **_: Any) -> None:
        self.spec = load_board(board)
        self.board = self.spec.name
        names = _split_hosts(hosts or [])
        if not names:
            raise UserError("the ssh backend needs --host USER@HOST[:PORT] (several, comma-separated, for a "
                            "parallel sweep over boards of one kind)")
        self.hosts: list[HostSpec] = [parse_host(h, self.spec.ssh.user, self.spec.ssh.port) for h in names]
        if agent_backend not in AGENT_BACKENDS:
            raise UserError(f"ssh agent backend '{agent_backend}' is not one of {', '.join(AGENT_BACKENDS)}")
        self.agent_backend = agent_backend
        self.simulated = agent_backend == "sim"
        self.sim_params = self.spec.sim_params() if self.simulated else None
        # $HW_PRUNE_REMOTE_PYTHON lets commands without a --remote-python flag use a venv on the board
        self.python = remote_python or os.environ.get("HW_PRUNE_REMOTE_PYTHON") or self.spec.ssh.python
        self.remote_dir = remote_dir or self.spec.ssh.remote_dir
        self.opts = SSHOptions(key, known_hosts, trust_new_host, float(timeout))
        self.batch_size = max(1, int(batch_size))
        self.warmup = int(warmup)
        self.cache_root = Path(cache_dir) if cache_dir else _cache_root()
        self.last_sweep: dict[str, Any] = {}
        self._lock = threading.Lock()

    def provenance(self) -> dict[str, Any]:
        return provenance(self.board, self.name, self.simulated, agent_backend=self.agent_backend,
                          hosts=[str(h) for h in self.hosts], remote_python=self.python)

    # -- whole model ------------------------------------------------------------------------------
    def measure_model(self, model: nn.Module, input_shape: tuple[int, int, int, int],
                      runs: int = 50) -> ModelMeasurement:
        specs = [s.to_dict() for s in extract_layer_specs(model, input_shape)]
        with tempfile.TemporaryDirectory(prefix="hw_prune_ssh_") as tmp:
            bundle = build_bundle(Path(tmp) / "bundle", model, input_shape, "model", layer_specs=specs,
                                  sim_params=self.sim_params)
            res = run_bundle_remote(bundle, self.hosts[0], self.opts, self.python, self.remote_dir,
                                    self.agent_backend, runs, agent_extra=["--warmup", str(self.warmup)], tag="measure")
        return ModelMeasurement(latency_ms=res["latency_ms"], p90_ms=res["p90_ms"], p99_ms=res["p99_ms"],
                                fps=res["fps"], fps_mt=res["fps_mt"], backend=self.name,
                                simulated=bool(res.get("simulated", self.simulated)), board=self.board, runs=runs,
                                provenance={**self.provenance(), "host": str(self.hosts[0]),
                                            "model_sha256": bundle.model_sha256, "timings": res["timings"],
                                            "board_versions": res.get("board_info", {}).get("versions")})

    # -- layer sweep ------------------------------------------------------------------------------
    def _cache_file(self, runs: int) -> Path:
        from hw_prune.deploy.bundle import AGENT_SRC, SIM_SRC, sha256_file

        # a changed simulator or agent must not reuse old numbers
        code = [sha256_file(AGENT_SRC)] + ([sha256_file(SIM_SRC)] if self.simulated else [])
        tag = json.dumps([CACHE_VERSION, self.board, self.agent_backend, int(runs), self.sim_params, code],
                         sort_keys=True)
        return self.cache_root / f"{self.board}-{self.agent_backend}-r{runs}-{hashlib.sha256(tag.encode()).hexdigest()[:12]}.jsonl"

    @staticmethod
    def _key(spec: LayerSpec) -> str:
        return json.dumps(list(spec.key()))

    def _load_cache(self, path: Path) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    out[rec["key"]] = rec
                except (json.JSONDecodeError, KeyError):
                    continue  # a line torn by a crash: that layer is simply measured again
        return out

    def _append_cache(self, path: Path, recs: list[dict[str, Any]]) -> None:
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in recs))
                f.flush()
                os.fsync(f.fileno())

    def _profile_bundle(self, tmp: Path) -> LocalBundle:
        """agent.py + sim_dpu.py + manifest (no model): what every batch runs against."""
        from hw_prune.deploy.bundle import AGENT_SRC, FORMAT, SIM_SRC, sha256_file
        import shutil

        d = tmp / "profile"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(AGENT_SRC, d / "agent.py")
        shutil.copyfile(SIM_SRC, d / "sim_dpu.py")
        manifest = {"format": FORMAT, "name": "profile", "model": None,
                    "sim": {"params": self.sim_params, "seed": 0} if self.sim_params else None,
                    "files": {f: sha256_file(d / f) for f in ("agent.py", "sim_dpu.py")}}
        (d / "manifest.json").write_text(json.dumps(manifest))
        return LocalBundle(d, manifest, ["agent.py", "sim_dpu.py", "manifest.json"])

    def _batch_files(self, tmp: Path, idx: int, specs: list[LayerSpec], runs: int) -> tuple[Path, list[str]]:
        d = tmp / f"batch{idx:04d}"
        d.mkdir(parents=True, exist_ok=True)
        layers, files = [], ["batch.json"]
        for i, s in enumerate(specs):
            entry: dict[str, Any] = {"spec": s.to_dict()}
            if self.agent_backend == "onnxruntime":
                from hw_prune.export import export_onnx
                from hw_prune.hw.layer_modules import layer_module

                m, shape = layer_module(s)
                export_onnx(m, shape, d / f"l{i}.onnx")
                entry["onnx"] = f"l{i}.onnx"
                files.append(f"l{i}.onnx")
            layers.append(entry)
        (d / "batch.json").write_text(json.dumps({"layers": layers, "runs": runs}))
        return d, files

    def measure_layers(self, specs: Sequence[LayerSpec], runs: int = 20) -> list[LayerMeasurement]:
        specs = list(specs)
        cache_path = self._cache_file(runs)
        cache = self._load_cache(cache_path)
        todo: dict[str, LayerSpec] = {}
        for s in specs:
            k = self._key(s)
            if k not in cache and k not in todo:
                todo[k] = s
        pending = list(todo.values())
        # at least one batch per host, so that a caller's chunk is spread over every board
        size = max(1, min(self.batch_size, -(-len(pending) // len(self.hosts)))) if pending else 1
        batches = [pending[i:i + size] for i in range(0, len(pending), size)]
        queues: list[list[tuple[int, list[LayerSpec]]]] = [[] for _ in self.hosts]
        for i, b in enumerate(batches):
            queues[i % len(self.hosts)].append((i, b))
        errors: dict[str, BaseException] = {}
        done_batches: list[int] = []
        t0 = time.perf_counter()

        def take(own: int) -> tuple[int, list[LayerSpec]] | None:
            with self._lock:
                if queues[own]:
                    return queues[own].pop(0)
                # steal from the longest queue (a slow or failed host's work)
                longest = max(queues, key=len)
                return longest.pop() if longest else None

        def worker(hi: int, tmp: Path) -> None:
            host = self.hosts[hi]
            item = None
            try:
                if not queues[hi] and not any(queues):
                    return
                with self.opts.session(host) as sess:
                    rdir = remote_run_dir(sess.resolve(self.remote_dir), "profile")
                    try:
                        upload_bundle(sess, self._profile_bundle(tmp / f"h{hi}"), rdir)
                        while True:
                            item = take(hi)
                            if item is None:
                                break
                            idx, batch = item
                            self._run_batch(sess, host, rdir, tmp, idx, batch, runs, cache_path)
                            with self._lock:
                                done_batches.append(idx)
                            item = None
                    finally:
                        sess.remove_tree(rdir)
            except Exception as e:  # kept for the caller: a thread must not print a traceback
                errors[str(host)] = e
                if item is not None:
                    with self._lock:
                        queues[hi].append(item)  # someone else may still take it

        if batches:
            with tempfile.TemporaryDirectory(prefix="hw_prune_sweep_") as tmpd:
                threads = [threading.Thread(target=worker, args=(hi, Path(tmpd)), daemon=True)
                           for hi in range(len(self.hosts))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        left = sum(len(q) for q in queues)
        cache = self._load_cache(cache_path)
        self.last_sweep = {"layers": len(specs), "unique": len(set(map(self._key, specs))),
                           "from_cache": len(set(map(self._key, specs))) - len(pending),
                           "measured": len(pending) - sum(len(b) for q in queues for _, b in q),
                           "batches": len(batches), "batches_done": len(done_batches), "hosts": [str(h) for h in self.hosts],
                           "hosts_used": sorted({r["host"] for r in cache.values() if r["key"] in todo}),
                           "wall_s": time.perf_counter() - t0, "cache": str(cache_path)}
        if left:
            bug = next((e for e in errors.values() if not isinstance(e, UserError)), None)
            if bug is not None:
                raise bug
            first = next(iter(errors.values()), "no host could take the work")
            raise RemoteError(f"layer sweep stopped with {left} of {len(batches)} batches unmeasured "
                              f"({len(pending) - self.last_sweep['measured']} layers); finished batches are cached in "
                              f"{cache_path} and a rerun resumes. First error: {first}")
        out = []
        for s in specs:
            r = cache[self._key(s)]
            out.append(LayerMeasurement(s, float(r["latency_ms"]), float(r["spread_ms"]), int(r["runs"])))
        return out

    def _run_batch(self, sess: SSHSession, host: HostSpec, rdir: str, tmp: Path, idx: int, batch: list[LayerSpec],
                   runs: int, cache_path: Path) -> None:
        import posixpath

        local, files = self._batch_files(tmp, idx, batch, runs)
        bdir = posixpath.join(rdir, f"batch{idx:04d}")
        sess.makedirs(bdir)
        for f in files:
            sess.upload(local / f, posixpath.join(bdir, f))
        code, out, err = sess.run(agent_argv(self.python, rdir, "profile", self.agent_backend, runs, self.opts.timeout,
                                             ["--batch", posixpath.join(bdir, "batch.json"), "--warmup",
                                              str(self.warmup)]), what=f"profiling batch {idx}")
        res = parse_agent_output(code, out, err, str(host))
        if len(res["layers"]) != len(batch):
            raise RemoteError(f"agent on {host} returned {len(res['layers'])} results for {len(batch)} layers; "
                              "update the agent (rerun deploys it again)")
        self._append_cache(cache_path, [{"key": self._key(s), "latency_ms": r["latency_ms"],
                                         "spread_ms": r["spread_ms"], "runs": r["runs"], "host": str(host),
                                         "simulated": bool(res.get("simulated")), "batch": idx}
                                        for s, r in zip(batch, res["layers"])])
