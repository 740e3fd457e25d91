"""`hw_prune deploy`: run a model on a board over SSH and bring back fps, latency percentiles and top-1."""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path
from typing import Any

from hw_prune.commands.common import add_model_args, model_from_args
from hw_prune.errors import RemoteError, UserError

NAME = "deploy"
HELP = "run a model on a board over SSH: measured fps, latency percentiles, top-1"
DESCRIPTION = ("Export the model, upload it with the on-board agent and a data sample to a fresh directory on the "
               "board (SFTP, checksummed), run it there and print what the board measured. Host keys are checked "
               "against known_hosts; results are saved under runs/<UTC time>-deploy/.")

BACKENDS = ("onnxruntime", "sim", "dpu", "finn")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--board", required=True, help="board name (zcu104, kv260, ...) or board YAML")
    p.add_argument("--host", required=True, help="USER@HOST[:PORT] of the board")
    p.add_argument("--key", help="private key file (default: ssh-agent and ~/.ssh keys)")
    p.add_argument("--known-hosts", help="known_hosts file to check the board's host key (default ~/.ssh/known_hosts)")
    p.add_argument("--trust-new-host", action="store_true",
                   help="accept an unknown host key and record it in known_hosts (check its fingerprint first)")
    p.add_argument("--remote-python", help="Python 3.10+ with numpy on the board (default: the board file's ssh.python)")
    p.add_argument("--remote-dir", help="parent directory on the board for the per-run folder (default: board file)")
    p.add_argument("--data", help="data to check top-1 on the board: 'synthetic[:NAME]' or an image folder")
    p.add_argument("--samples", type=int, default=256, help="validation images uploaded for top-1 (default 256)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="on-board runtime (default: dpu for DPU boards, finn for FINN boards, onnxruntime for CPUs)")
    p.add_argument("--runs", type=int, default=100, help="timed inferences after warm-up (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up inferences (default 10)")
    p.add_argument("--threads", type=int, default=0, help="streams for multi-thread fps (default: board CPU count)")
    p.add_argument("--keep", action="store_true", help="keep the per-run directory on the board")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for connecting and for the remote run (default 600)")
    p.add_argument("--xmodel", help="compiled .xmodel for --backend dpu (Vitis AI compiler output)")
    p.add_argument("--dpu-overlay", help="DPU overlay bitfile on the board for --backend dpu (default pynq-dpu's dpu.bit)")
    p.add_argument("--finn-deploy", help="FINN deploy folder (bitfile/, driver/) for --backend finn")
    p.add_argument("-o", "--output", help="result folder (default runs/<UTC time>-deploy)")


def _default_backend(board: Any) -> str:
    return {"dpu": "dpu", "finn": "finn"}.get(board.kind, "onnxruntime")


def _check_args(args: argparse.Namespace) -> None:
    if args.runs < 1:
        raise UserError(f"--runs {args.runs} must be at least 1")
    if args.warmup < 0 or args.threads < 0:
        raise UserError("--warmup and --threads must not be negative")
    if not args.timeout > 0:
        raise UserError(f"--timeout {args.timeout} must be positive seconds")
    if args.samples < 1:
        raise UserError(f"--samples {args.samples} must be at least 1")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hw_prune import ui
    from hw_prune.atomic import ensure_writable_dir, write_json
    from hw_prune.deploy.bundle import build_bundle, sample_from_splits
    from hw_prune.deploy.remote import SSHOptions, run_bundle_remote
    from hw_prune.deploy.session import parse_host
    from hw_prune.hw.boards import load_board
    from hw_prune.layers import extract_layer_specs
    from hw_prune.provenance import provenance

    _check_args(args)
    board = load_board(args.board)
    host = parse_host(args.host, board.ssh.user, board.ssh.port)
    backend = args.backend or _default_backend(board)
    if backend == "dpu" and not args.xmodel:
        raise UserError("--backend dpu needs --xmodel FILE (compiled by Vitis AI for this board's DPU); "
                        "use --backend sim or onnxruntime without one")
    if backend == "finn" and not args.finn_deploy:
        raise UserError("--backend finn needs --finn-deploy DIR (FINN's deploy folder with bitfile/ and driver/)")
    sim_params = board.sim_params() if backend == "sim" else (board.sim_params() if board.dpu else None)
    mb = model_from_args(args)

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.output) if args.output else Path("runs") / f"{stamp}-deploy"
    if (out / "result.json").exists():
        raise UserError(f"{out}/result.json already exists; choose another -o folder (nothing was overwritten)")
    ensure_writable_dir(out)

    sample = None
    data_name = None
    if args.data:
        from hw_prune.data import check_classes, load_data

        splits = load_data(args.data, mb.input_shape)
        check_classes(splits, mb.num_classes, mb.name)
        sample = sample_from_splits(splits, args.samples)
        data_name = splits.name
    specs = [s.to_dict() for s in extract_layer_specs(mb.model, mb.input_shape)]
    model_label = Path(args.model).name if Path(args.model).suffix == ".pt" else mb.name
    ui.info(f"building the deploy bundle for {model_label} ({len(specs)} layers"
            + (f", {len(sample['y'])} images from {data_name}" if sample else "") + ") ...")
    bundle = build_bundle(out / "bundle", mb.model, mb.input_shape, model_label, layer_specs=specs,
                          sim_params=sim_params, sample=sample, xmodel=args.xmodel, finn_deploy=args.finn_deploy)
    extra = ["--warmup", str(args.warmup), "--threads", str(args.threads)]
    if args.dpu_overlay:
        extra += ["--dpu-overlay", args.dpu_overlay]
    python = args.remote_python or board.ssh.python
    remote_base = args.remote_dir or board.ssh.remote_dir
    opts = SSHOptions(args.key, args.known_hosts, args.trust_new_host, args.timeout)
    ui.info(f"deploying to {host} ({backend}, {args.runs} runs) ...")
    prov = provenance(board=board.name, backend="ssh", simulated=backend == "sim", agent_backend=backend,
                      host=str(host), model=model_label, model_sha256=bundle.model_sha256,
                      model_source=mb.source, input_shape=list(mb.input_shape), data=data_name)
    try:
        res = run_bundle_remote(bundle, host, opts, python, remote_base, backend, args.runs, keep=args.keep,
                                agent_extra=extra)
    except RemoteError as e:
        # the folder says what happened, but nothing in it claims a result
        write_json(out / "error.json", {"complete": False, "error": str(e), "provenance": prov})
        raise
    prov["board_versions"] = res.get("board_info", {}).get("versions")
    prov["board_machine"] = res.get("board_info", {}).get("machine")
    result: dict[str, Any] = {
        "fps": res.get("fps"), "latency_ms": res.get("latency_ms"), "p90_ms": res.get("p90_ms"),
        "p99_ms": res.get("p99_ms"), "fps_mt": res.get("fps_mt"),
        "top1": res.get("top1") if sample is not None else None,
        "top1_backend": res.get("top1_backend") if sample is not None else None,
        "backend": backend, "transport": "ssh", "simulated": bool(res.get("simulated", backend == "sim")),
        "host": str(host), "board": board.name, "model": model_label, "model_sha256": bundle.model_sha256,
        "runs": args.runs, "threads": res.get("threads"), "samples": int(len(sample["y"])) if sample else 0,
        "remote_dir": res["remote_dir"], "kept": res["kept"], "timings": res["timings"],
        "result": str(out / "result.json"), "complete": True, "provenance": prov,
    }
    write_json(out / "result.json", result)
    if (out / "error.json").exists():  # a rerun into the same folder succeeded: the old failure no longer applies
        (out / "error.json").unlink()
    rows = [{"metric": k, "value": result[k]} for k in ("fps", "latency_ms", "p90_ms", "p99_ms", "fps_mt", "top1")
            if result[k] is not None]
    kind = "SIMULATED DPU on the board" if result["simulated"] else "measured on the board"
    ui.info(f"{model_label} on {board.name} via {host}: {backend}, {kind} ({args.runs} runs, "
            f"{result['threads']} threads for fps_mt" + (f", top-1 on {result['samples']} images" if sample else "")
            + ")")
    ui.table(rows)
    t = res["timings"]
    size_mib = sum((bundle.dir / f).stat().st_size for f in bundle.files) / 2**20
    ui.info(f"ssh: connect {t['connect_s']:.2f} s, upload {size_mib:.1f} MiB {t['upload_s']:.2f} s, agent "
            f"{t['run_s']:.2f} s, cleanup {t.get('cleanup_s', 0):.2f} s")
    ui.info(f"saved {out / 'result.json'}" + (f"; kept {res['remote_dir']} on the board" if args.keep else ""))
    return result
