#!/usr/bin/env python3
"""hw_prune on-board agent: runs ON THE BOARD with Python 3.10+ and numpy only.

Copied into each deploy bundle as a plain file (it must not import hw_prune). Optional runtimes
are imported lazily, only by the backend that needs them:
  dpu          pynq_dpu.DpuOverlay + a compiled .xmodel (Vitis AI), vart/xir for one runner per thread
  finn         FINN's generated PYNQ driver (driver.py + driver_base.FINNExampleOverlay) and bitfile
  onnxruntime  CPU inference of the bundle's model.onnx
  sim          the simulated DPU (sim_dpu.py from the bundle); always reported as simulated: true

Commands (each prints ONE JSON object on stdout; failures print {"ok": false, "error": ...}, exit 3):
  agent.py info
  agent.py run     --bundle DIR --backend B [--runs N] [--warmup W] [--threads T] [--deadline S]
  agent.py profile --bundle DIR --batch FILE --backend sim|onnxruntime [--runs N] [--deadline S]
Checksums in DIR/manifest.json are verified before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import threading
import time

sys.dont_write_bytecode = True  # leave nothing but our own files in the run directory

AGENT_VERSION = 1


class AgentError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# bundle
def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(bundle: str) -> dict:
    path = os.path.join(bundle, "manifest.json")
    if not os.path.isfile(path):
        raise AgentError(f"no manifest.json in {bundle}; upload the bundle again")
    with open(path) as f:
        manifest = json.load(f)
    bad = []
    for name, digest in manifest.get("files", {}).items():
        p = os.path.join(bundle, name)
        if not os.path.isfile(p):
            bad.append(f"{name} missing")
        elif sha256_file(p) != digest:
            bad.append(f"{name} checksum mismatch")
    if bad:
        raise AgentError("bundle verification failed: " + ", ".join(bad) + "; upload the bundle again")
    return manifest


def load_sample(bundle: str, manifest: dict):
    import numpy as np

    name = manifest.get("sample")
    if not name:
        return None
    with np.load(os.path.join(bundle, name)) as z:
        return {k: z[k] for k in z.files}


def stats(lat_ms: list[float]) -> dict:
    import numpy as np

    a = np.asarray(lat_ms, dtype=np.float64)
    p50, p90, p99 = (float(v) for v in np.percentile(a, [50, 90, 99]))
    return {"latency_ms": p50, "p90_ms": p90, "p99_ms": p99, "fps": 1000.0 / p50 if p50 > 0 else 0.0,
            "mean_ms": float(a.mean()), "min_ms": float(a.min())}


def time_single(fn, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def time_multi(make_worker, threads: int, frames: int) -> float:
    """Frames/s with `threads` streams; make_worker(i) returns a callable running one frame."""
    workers = [make_worker(i) for i in range(threads)]
    for w in workers:
        w()  # warm each stream
    per = max(1, frames // threads)
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def loop(w):
        barrier.wait()
        try:
            for _ in range(per):
                w()
        except BaseException as e:  # surfaced after join
            errors.append(e)

    ts = [threading.Thread(target=loop, args=(w,), daemon=True) for w in workers]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return per * threads / wall if wall > 0 else 0.0


def top1_of(predict, x, y, batch: int = 32) -> float:
    """predict(batch ndarray) -> logits (N, classes) or class indices (N,)."""
    import numpy as np

    correct = 0
    for i in range(0, len(y), batch):
        out = np.asarray(predict(x[i:i + batch]))
        pred = out.reshape(len(out), -1).argmax(axis=1) if out.ndim > 1 and out.reshape(len(out), -1).shape[1] > 1 \
            else out.reshape(-1).astype(np.int64)
        correct += int((pred == y[i:i + batch]).sum())
    return correct / max(1, len(y))


# ---------------------------------------------------------------------------------------------------
# backends
def _ort_session(path: str, threads: int = 1):
    try:
        import onnxruntime as ort
    except ImportError:
        raise AgentError("backend onnxruntime needs the onnxruntime package on the board; pip install onnxruntime "
                         "there or pass --remote-python with an interpreter that has it") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads   # one core per stream: single-stream and multi-stream fps stay comparable
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def run_onnxruntime(bundle, manifest, sample, args) -> dict:
    import numpy as np

    model = os.path.join(bundle, manifest["model"])
    sess = _ort_session(model)
    iname = sess.get_inputs()[0].name
    shape = [int(v) for v in manifest["input_shape"]]
    x1 = sample["x"][:1].astype(np.float32) if sample is not None else np.zeros([1] + shape[1:], np.float32)
    lat = time_single(lambda: sess.run(None, {iname: x1}), args.warmup, args.runs)
    res = stats(lat)
    res["fps_mt"] = time_multi(lambda i: (lambda: sess.run(None, {iname: x1})), args.threads, args.runs)
    if sample is not None and "y" in sample:
        res["top1"] = top1_of(lambda xb: sess.run(None, {iname: xb.astype(np.float32)})[0], sample["x"], sample["y"])
        res["top1_backend"] = "onnxruntime"
    res["simulated"] = False
    return res


def _sim(bundle, manifest):
    sys.path.insert(0, bundle)
    try:
        import sim_dpu  # shipped in the bundle
    except ImportError as e:
        raise AgentError(f"cannot import sim_dpu.py from the bundle: {e}; upload the bundle again") from None
    sim = manifest.get("sim") or {}
    return sim_dpu.SimDPU(sim.get("params"), sim.get("seed", 0))


def run_sim(bundle, manifest, sample, args) -> dict:
    sim = _sim(bundle, manifest)
    specs = []
    if manifest.get("layers_file"):
        with open(os.path.join(bundle, manifest["layers_file"])) as f:
            specs = json.load(f)
    if not specs:
        raise AgentError("the bundle has no layer specs for the simulated DPU; rebuild the bundle")
    r = dict(sim.measure_model(specs, args.runs))
    res = {k: float(r[k]) for k in ("latency_ms", "p90_ms", "p99_ms", "fps", "fps_mt") if k in r}
    res["simulated"] = True
    # the simulator times the DPU; accuracy is the float model's, computed here with onnxruntime when present
    if sample is not None and "y" in sample:
        try:
            import numpy as np
            sess = _ort_session(os.path.join(bundle, manifest["model"]))
            iname = sess.get_inputs()[0].name
            res["top1"] = top1_of(lambda xb: sess.run(None, {iname: xb.astype(np.float32)})[0], sample["x"], sample["y"])
            res["top1_backend"] = "onnxruntime (float model; not DPU-quantised)"
        except AgentError:
            res["top1"] = None
            res["top1_backend"] = "unavailable: no onnxruntime on the board"
    return res


def run_dpu(bundle, manifest, sample, args) -> dict:
    """Vitis AI DPU through pynq-dpu: DpuOverlay(bitfile).load_model(xmodel), runner.execute_async/wait."""
    import numpy as np

    try:
        from pynq_dpu import DpuOverlay
    except ImportError:
        raise AgentError("backend dpu needs pynq_dpu on the board (pip install pynq-dpu on a PYNQ image)") from None
    xmodel = manifest.get("xmodel")
    if not xmodel:
        raise AgentError("backend dpu needs a compiled .xmodel in the bundle; pass --xmodel FILE to deploy")
    overlay = DpuOverlay(args.dpu_overlay or "dpu.bit")
    xmodel_path = os.path.join(bundle, xmodel)
    overlay.load_model(xmodel_path)
    runner = overlay.runner

    def make_io(r):
        it, ot = r.get_input_tensors()[0], r.get_output_tensors()[0]
        quant = "int8" in str(it.dtype).lower() or "xint" in str(it.dtype).lower()
        dt_in = np.int8 if quant else np.float32
        dt_out = np.int8 if "int8" in str(ot.dtype).lower() or quant else np.float32
        scale = 2.0 ** it.get_attr("fix_point") if quant else 1.0
        ib = [np.zeros(tuple(it.dims), dtype=dt_in, order="C")]
        ob = [np.empty(tuple(ot.dims), dtype=dt_out, order="C")]
        return it, ib, ob, scale, dt_in

    it, ib, ob, scale, dt_in = make_io(runner)

    def once(r=runner, i=ib, o=ob):
        job = r.execute_async(i, o)
        r.wait(job)

    lat = time_single(once, args.warmup, args.runs)
    res = stats(lat)
    # one runner per thread (the Vitis AI examples' pattern); fall back to sharing the overlay's runner
    try:
        import vart
        import xir

        graph = xir.Graph.deserialize(xmodel_path)
        subs = [s for s in graph.get_root_subgraph().toposort_child_subgraph()
                if s.has_attr("device") and s.get_attr("device").upper() == "DPU"]
        runners = [vart.Runner.create_runner(subs[0], "run") for _ in range(args.threads)]
    except Exception:
        runners = [runner] * args.threads

    def make_worker(i):
        r = runners[i]
        _, wi, wo, _, _ = make_io(r)
        return lambda: once(r, wi, wo)

    res["fps_mt"] = time_multi(make_worker, args.threads, args.runs)
    if sample is not None and "y" in sample:
        batch = int(it.dims[0]) if int(it.dims[0]) > 0 else 1
        x = sample["x"].transpose(0, 2, 3, 1)  # the DPU takes NHWC
        preds = []
        for k in range(0, len(x), batch):
            xb = x[k:k + batch]
            buf = np.zeros(tuple(it.dims), dtype=dt_in)
            v = xb * scale
            buf[:len(xb)] = np.clip(np.round(v), -128, 127).astype(dt_in) if dt_in == np.int8 else v
            job = runner.execute_async([buf], ob)
            runner.wait(job)
            preds.extend(ob[0].reshape(ob[0].shape[0], -1)[:len(xb)].argmax(axis=1).tolist())
        res["top1"] = float((np.asarray(preds) == sample["y"][:len(preds)]).mean())
        res["top1_backend"] = "dpu"
    res["simulated"] = False
    return res


def run_finn(bundle, manifest, sample, args) -> dict:
    """FINN dataflow accelerator through its generated PYNQ driver (driver.py + driver_base.py + bitfile)."""
    import glob

    import numpy as np

    fdir = manifest.get("finn_dir")
    if not fdir:
        raise AgentError("backend finn needs FINN's deploy folder in the bundle; pass --finn-deploy DIR to deploy")
    root = os.path.join(bundle, fdir)
    ddir = os.path.join(root, "driver")
    bits = sorted(glob.glob(os.path.join(root, "bitfile", "*.bit")) + glob.glob(os.path.join(root, "bitfile", "*.xclbin")))
    if not bits:
        raise AgentError("no bitfile/*.bit in the FINN deploy folder; rebuild with FINN's bitfile step")
    sys.path.insert(0, ddir)
    try:
        import driver as finn_driver  # noqa: F401 - generated by FINN, defines io_shape_dict
        from driver_base import FINNExampleOverlay
    except ImportError as e:
        raise AgentError(f"cannot import FINN's driver from the bundle ({e}); it needs pynq and qonnx on the board") from None
    accel = FINNExampleOverlay(bitfile_name=bits[0], platform=args.finn_platform, io_shape_dict=finn_driver.io_shape_dict,
                               batch_size=1, runtime_weight_dir=os.path.join(ddir, "runtime_weights") + "/")
    ishape = accel.ishape_normal()
    idt = accel.idt()
    x0 = np.zeros(ishape, dtype=np.float32)
    lat = time_single(lambda: accel.execute(x0), args.warmup, args.runs)
    res = stats(lat)
    # a dataflow design's throughput comes from streaming a batch, which its driver measures
    accel.batch_size = max(1, min(args.runs, 1000))
    tp = accel.throughput_test()
    res["fps_mt"] = float(tp.get("throughput[images/s]", 0.0))
    res["finn_throughput_test"] = {k: float(v) for k, v in tp.items() if isinstance(v, (int, float))}
    accel.batch_size = 1
    if sample is not None and "x_u8" in sample and "y" in sample:
        x = sample["x_u8"].transpose(0, 2, 3, 1)  # FINN drivers take raw NHWC pixels
        preds = []
        for img in x:
            out = np.asarray(accel.execute(img.reshape(ishape).astype(np.float32)))
            flat = out.reshape(-1)
            preds.append(int(flat[0]) if flat.size == 1 else int(flat.argmax()))  # TopK node gives the index
        res["top1"] = float((np.asarray(preds) == sample["y"][:len(preds)]).mean())
        res["top1_backend"] = "finn"
    res["finn_input_datatype"] = str(idt)
    res["simulated"] = False
    return res


RUNNERS = {"onnxruntime": run_onnxruntime, "sim": run_sim, "dpu": run_dpu, "finn": run_finn}


# ---------------------------------------------------------------------------------------------------
# profile: per-layer timings for a batch of layer specs
def profile(bundle, manifest, args) -> dict:
    import numpy as np

    with open(args.batch) as f:
        batch = json.load(f)
    layers = batch["layers"]
    runs = int(batch.get("runs", args.runs))
    if args.backend == "sim":
        sim = _sim(bundle, manifest)
        raw = sim.measure_layers([l["spec"] for l in layers], runs)
        out = []
        for r in raw:
            r = dict(r)
            out.append({"latency_ms": float(r.get("latency_ms", r.get("ms", 0.0))),
                        "spread_ms": float(r.get("spread_ms", 0.0)), "runs": int(r.get("runs", runs))})
        return {"layers": out, "simulated": True}
    if args.backend != "onnxruntime":
        raise AgentError(f"profile supports the sim and onnxruntime backends, not {args.backend}")
    base = os.path.dirname(os.path.abspath(args.batch))
    out = []
    for l in layers:
        sess = _ort_session(os.path.join(base, l["onnx"]))
        feeds = {i.name: np.random.default_rng(0).standard_normal(
            [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]).astype(np.float32) for i in sess.get_inputs()}
        lat = time_single(lambda: sess.run(None, feeds), max(2, runs // 10), runs)
        p10, p50, p90 = np.percentile(lat, [10, 50, 90])
        out.append({"latency_ms": float(p50), "spread_ms": float((p90 - p10) / 2), "runs": runs})
    return {"layers": out, "simulated": False}


# ---------------------------------------------------------------------------------------------------
def info() -> dict:
    import importlib.util

    import numpy as np

    def present(m: str) -> bool:
        try:
            return importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):  # a broken install counts as absent
            return False

    have = {m: present(m) for m in ("onnxruntime", "pynq", "pynq_dpu", "vart", "qonnx")}
    vers = {"python": platform.python_version(), "numpy": np.__version__}
    if have["onnxruntime"]:
        import onnxruntime
        vers["onnxruntime"] = onnxruntime.__version__
    return {"agent_version": AGENT_VERSION, "machine": platform.machine(), "node": platform.node(),
            "cpus": os.cpu_count(), "versions": vers, "available": have}


def _watch_parent() -> None:
    """Exit when the SSH session that started us is gone (we were re-parented), so no run is left behind."""
    ppid = os.getppid()

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != ppid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _parse(argv):
    import argparse

    p = argparse.ArgumentParser(prog="agent.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info")
    for name in ("run", "profile"):
        s = sub.add_parser(name)
        s.add_argument("--bundle", required=True)
        s.add_argument("--backend", choices=sorted(RUNNERS), default="onnxruntime")
        s.add_argument("--runs", type=int, default=100)
        s.add_argument("--warmup", type=int, default=10)
        s.add_argument("--threads", type=int, default=0, help="streams for multi-thread fps (0 = CPU count)")
        s.add_argument("--deadline", type=float, default=0, help="give up after S seconds (0 = never)")
        s.add_argument("--dpu-overlay", default=None)
        s.add_argument("--finn-platform", default="zynq-iodma")
        if name == "profile":
            s.add_argument("--batch", required=True)
    return p.parse_args(argv)


def main(argv=None) -> int:
    try:
        args = _parse(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if getattr(args, "deadline", 0) and args.deadline > 0:
        def expire():
            sys.stdout.write(json.dumps({"ok": False, "error": f"agent deadline of {args.deadline:g} s exceeded on the "
                                         "board; raise --timeout or use fewer --runs"}) + "\n")
            sys.stdout.flush()
            os._exit(124)
        timer = threading.Timer(args.deadline, expire)
        timer.daemon = True
        timer.start()
    _watch_parent()
    try:
        if args.cmd == "info":
            res = info()
        else:
            args.threads = args.threads or max(1, os.cpu_count() or 1)
            args.runs = max(1, args.runs)
            bundle = os.path.abspath(args.bundle)
            manifest = load_manifest(bundle)
            t0 = time.perf_counter()
            if args.cmd == "run":
                res = RUNNERS[args.backend](bundle, manifest, load_sample(bundle, manifest), args)
                res.update(backend=args.backend, runs=args.runs, warmup=args.warmup, threads=args.threads)
            else:
                res = profile(bundle, manifest, args)
                res["backend"] = args.backend
            res["agent_wall_s"] = time.perf_counter() - t0
            res["board_info"] = info()
        res["ok"] = True
    except AgentError as e:
        res, code = {"ok": False, "error": str(e)}, 3
    except Exception as e:  # report, never a traceback on the host's terminal
        res, code = {"ok": False, "error": f"{type(e).__name__}: {e}"}, 3
    else:
        code = 0
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
