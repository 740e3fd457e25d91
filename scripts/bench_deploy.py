#!/usr/bin/env python3
"""SSH deploy overhead: the same bundle run by the same agent locally vs through a loopback sshd.

Starts a throwaway sshd on 127.0.0.1 (as the deploy tests do), then for each model alternates
local and SSH runs and reports medians: end-to-end wall time (SSH: connect + SFTP upload + agent +
cleanup), the agent's own time, and the fps/top-1 each path reports. Writes docs/benchmarks/deploy.md.
Usage: .venv/bin/python scripts/bench_deploy.py [--repeats 5] [--runs 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

torch.set_num_threads(1)

from hw_prune.data import load_data  # noqa: E402
from hw_prune.deploy.bundle import build_bundle, run_agent_local, sample_from_splits  # noqa: E402
from hw_prune.deploy.remote import SSHOptions, run_bundle_remote  # noqa: E402
from hw_prune.deploy.session import parse_host  # noqa: E402
from hw_prune.layers import extract_layer_specs  # noqa: E402
from hw_prune.models import build_builtin  # noqa: E402
from tests.deploy.sshd import Sshd  # noqa: E402

MODELS = ("resnet20", "mobilenetv2-small")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "deploy.md"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hw_prune_bench_deploy_"))
    server = Sshd(tmp / "sshd")
    server.start()
    rows = []
    try:
        host = parse_host(server.target)
        opts = SSHOptions(str(server.user_key), str(server.known_hosts), False, 600)
        splits = load_data("synthetic:tiny", (1, 3, 32, 32))
        sample = sample_from_splits(splits, 128)
        for name in MODELS:
            model = build_builtin(name, 10, (1, 3, 32, 32))
            specs = [s.to_dict() for s in extract_layer_specs(model, (1, 3, 32, 32))]
            b = build_bundle(tmp / name, model, (1, 3, 32, 32), name, layer_specs=specs, sample=sample)
            size_kb = sum((b.dir / f).stat().st_size for f in b.files) / 1024
            loc, rem = [], []
            for _ in range(a.repeats):
                t = time.perf_counter()
                r = run_agent_local(b, "onnxruntime", a.runs)
                loc.append((time.perf_counter() - t, r))
                r = run_bundle_remote(b, host, opts, sys.executable, str(tmp / "board"), "onnxruntime", a.runs)
                rem.append((r["timings"]["total_s"], r))
            med = statistics.median
            rows.append({
                "model": name, "bundle_kb": size_kb,
                "local_wall_s": med(w for w, _ in loc), "ssh_wall_s": med(w for w, _ in rem),
                "connect_s": med(r["timings"]["connect_s"] for _, r in rem),
                "upload_s": med(r["timings"]["upload_s"] for _, r in rem),
                "run_s": med(r["timings"]["run_s"] for _, r in rem),
                "cleanup_s": med(r["timings"]["cleanup_s"] for _, r in rem),
                "local_fps": med(r["fps"] for _, r in loc), "ssh_fps": med(r["fps"] for _, r in rem),
                "local_top1": loc[0][1]["top1"], "ssh_top1": rem[0][1]["top1"],
            })
            print(rows[-1], file=sys.stderr)
    finally:
        server.stop()
    cpu = os.cpu_count()
    lines = [
        "# Deploy over SSH vs a local run", "",
        f"`scripts/bench_deploy.py --repeats {a.repeats} --runs {a.runs}`: one bundle per model (ONNX, agent, "
        "128-image synthetic:tiny sample), run by the same agent (`--backend onnxruntime`, 1 intra-op thread) "
        f"locally and through a loopback OpenSSH server on this {cpu}-core machine; medians of {a.repeats} "
        "alternating runs. SSH wall = connect + SFTP upload + agent run + remote cleanup.", "",
        "| model | bundle KiB | local wall s | SSH wall s | overhead s | connect s | upload s | agent via SSH s "
        "| cleanup s | local fps | SSH fps | fps ratio | top-1 local / SSH |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['bundle_kb']:.0f} | {r['local_wall_s']:.2f} | {r['ssh_wall_s']:.2f} | "
                     f"{r['ssh_wall_s'] - r['local_wall_s']:+.2f} | {r['connect_s']:.3f} | {r['upload_s']:.3f} | "
                     f"{r['run_s']:.2f} | {r['cleanup_s']:.3f} | {r['local_fps']:.0f} | {r['ssh_fps']:.0f} | "
                     f"{r['ssh_fps'] / r['local_fps']:.3f} | {r['local_top1']:.4f} / {r['ssh_top1']:.4f} |")
    lines += ["", "The fps numbers are timed on the board by the agent, so SSH does not enter them: the ratio only "
              "shows run-to-run noise on a shared machine. The SSH cost is a fixed per-deploy overhead (key "
              "exchange, SFTP of the bundle, starting the remote interpreter), not a per-frame one.", ""]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
