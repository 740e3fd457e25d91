"""`hw_prune profile`: measure the sweep on a backend, fit a cost model, write latency_models/<board>-<backend>/.

Resumable: every finished batch rewrites measurements.csv atomically (temp + rename) and a rerun
skips the configurations already in it. Outputs: measurements.csv, model.json, fit_report.json/.md,
staircase.png, and on a CPU fast_path.csv (paired probes of the channel blocks it rewards, hw/fast_path.py).
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hw_prune import ui
from hw_prune.atomic import atomic_path, ensure_writable_dir, write_json, write_text
from hw_prune.errors import UserError
from hw_prune.hw import fast_path
from hw_prune.hw.cost_model import SPEC_FIELDS, LatencyModel, fit_cost_model, model_dir_for
from hw_prune.hw.sweep import CPU_CHANNELS, REFERENCE_MODELS, staircase_layer, sweep
from hw_prune.layers import LayerSpec

CSV_COLUMNS = ["kind", *SPEC_FIELDS, "model", "size", "latency_ms", "spread_ms", "runs", "backend", "simulated",
               "time_utc"]
HOLDOUT = 0.2
FAST_PATH_CSV = "fast_path.csv"


def _key_str(spec: LayerSpec) -> str:
    return "|".join(str(v) for v in spec.key())


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=CSV_COLUMNS)
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a readable measurements CSV ({str(e).splitlines()[0]}); "
                        "move it away to start a fresh profile") from None
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path} lacks columns {missing}; move it away to start a fresh profile")
    return df


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df[CSV_COLUMNS].to_csv(tmp, index=False)


def _layer_key(row: Any) -> str:
    return "|".join(str(int(row[k])) if k != "op" else str(row[k]) for k in SPEC_FIELDS)


def is_holdout(key: str, share: float = HOLDOUT) -> bool:
    """Deterministic 20 % split by configuration, so a resumed profile keeps the same split."""
    return (zlib.crc32(key.encode()) % 1000) < share * 1000


def _layer_df(df: pd.DataFrame) -> pd.DataFrame:
    lay = df[df["kind"] == "layer"].copy()
    for k in SPEC_FIELDS[1:]:
        lay[k] = lay[k].astype(int)
    lay["key"] = [_layer_key(r) for _, r in lay.iterrows()]
    return lay


def _model_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    from hw_prune.hw.reference import model_specs

    recs = []
    for _, r in df[df["kind"] == "model"].iterrows():
        recs.append({"name": f"{r['model']}@{int(r['size'])}", "specs": list(model_specs(str(r["model"]), int(r["size"]))),
                     "latency_ms": float(r["latency_ms"])})
    return recs


def _scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    e = np.abs(pred / y - 1)
    return {"n": int(len(y)), "mape": float(e.mean()) if len(e) else 0.0,
            "within_5pct": float((e <= 0.05).mean()) if len(e) else 0.0,
            "within_10pct": float((e <= 0.10).mean()) if len(e) else 0.0}


def _read_fast_path(out: Path) -> list[dict[str, Any]] | None:
    path = out / FAST_PATH_CSV
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a readable CSV ({str(e).splitlines()[0]}); delete it and re-run "
                        "hw_prune profile to measure it again") from None
    missing = [c for c in fast_path.COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path} lacks columns {missing}; delete it and re-run hw_prune profile")
    return df.to_dict("records")


def measure_fast_path(backend: Any, out: Path) -> list[dict[str, Any]] | None:
    """On a backend that times layer pairs (a CPU), probe the channel blocks once and keep fast_path.csv."""
    rows = _read_fast_path(out)
    if rows is not None or not hasattr(backend, "paired_layer_ratio"):
        return rows
    ui.info(f"probing channel fast paths ({len(fast_path.probe_pairs())} paired layer timings)")
    rows = fast_path.probe(backend.paired_layer_ratio)
    with atomic_path(out / FAST_PATH_CSV) as tmp:
        pd.DataFrame(rows, columns=list(fast_path.COLUMNS)).to_csv(tmp, index=False)
    return rows


def fit_and_report(df: pd.DataFrame, board: str, backend: str, simulated: bool, out: Path,
                   provenance: dict[str, Any] | None = None) -> tuple[LatencyModel, dict[str, Any]]:
    """Fit on 80 % of the layer configs, score on the held-out 20 %, save that model."""
    lay = _layer_df(df)
    models = _model_records(df)
    hold = np.array([is_holdout(k) for k in lay["key"]])
    t0 = time.time()
    cm80 = fit_cost_model(lay[~hold], models, board=board, backend=backend, simulated=simulated,
                          fast_path=_read_fast_path(out))
    test = lay[hold]
    specs = [LayerSpec(**{k: (r[k] if k == "op" else int(r[k])) for k in SPEC_FIELDS}) for _, r in test.iterrows()]
    pred = cm80.predict_layers(specs)
    held = _scores(pred, test["latency_ms"].to_numpy(float))
    per_op = {}
    for op in sorted(test["op"].unique()):
        m = (test["op"] == op).to_numpy()
        per_op[op] = _scores(pred[m], test["latency_ms"].to_numpy(float)[m])
    # the saved model is the one scored: fitted on the 80 %, so the report is its own held-out score
    cm = cm80
    cm.meta.update({"provenance": provenance or {}, "n_layers": int(len(lay)), "n_train": int((~hold).sum()),
                    "n_models": len(models)})
    model_rows = [{"model": r["name"], "measured_ms": r["latency_ms"],
                   "predicted_ms": cm.predict_model(r["specs"]).latency_ms} for r in models]
    report = {"board": board, "backend": backend, "simulated": simulated, "alignment": cm.alignment,
              "tile": cm.tile, "fast_path": cm.meta.get("fast_path"),
              "n_layers": int(len(lay)), "n_train": int((~hold).sum()), "n_holdout": int(hold.sum()),
              "holdout": held, "holdout_by_op": per_op, "frame": cm.frame,
              "reference_models_in_fit": model_rows, "fit_seconds": round(time.time() - t0, 2),
              "classes": {k: {kk: v[kk] for kk in ("a", "p", "mode", "n", "mape")} for k, v in cm.classes.items()}}
    cm.meta["fit"] = {"holdout": held, "alignment": cm.alignment}
    cm.save(out)
    write_json(out / "fit_report.json", report)
    write_text(out / "fit_report.md", _report_md(report))
    _staircase_png(lay, cm, out / "staircase.png", simulated)
    return cm, report


def _fast_path_md(r: dict[str, Any]) -> str:
    fp = r.get("fast_path")
    if not fp:
        return ""
    shares = ", ".join(f"{b}: {v:.0%}" for b, v in fp["median_saved_by_block"].items())
    return (f" (staircase tile {r['tile']}; paired probes: cutting to a width off a multiple of b saves this "
            f"share of the proportional time, median: {shares}; rewarded block {fp['block']})")


def _report_md(r: dict[str, Any]) -> str:
    h = r["holdout"]
    kind = "SIMULATED DPU (sim backend)" if r["simulated"] else f"measured ({r['backend']} backend)"
    lines = [f"# Cost model fit: {r['board']} / {r['backend']}", "",
             f"Data: {kind}. {r['n_layers']} layer configurations; fitted on {r['n_train']}, "
             f"scored on {r['n_holdout']} held out (20 %).", "",
             f"- channel alignment found from the data: **{r['alignment']}**" + _fast_path_md(r),
             f"- held-out MAPE: **{h['mape']:.2%}**, within 5 %: **{h['within_5pct']:.1%}**, "
             f"within 10 %: **{h['within_10pct']:.1%}**",
             f"- per-frame term: f0 = {r['frame']['f0']:.4f} ms, scale f1 = {r['frame']['f1']:.4f} "
             f"(from {r['frame'].get('n_models', 0)} whole models)", "",
             "| op | held-out n | MAPE | within 5 % | within 10 % |", "|---|---|---|---|---|"]
    for op, s in r["holdout_by_op"].items():
        lines.append(f"| {op} | {s['n']} | {s['mape']:.2%} | {s['within_5pct']:.1%} | {s['within_10pct']:.1%} |")
    lines += ["", "| reference model (in fit) | measured ms | predicted ms |", "|---|---|---|"]
    for m in r["reference_models_in_fit"]:
        lines.append(f"| {m['model']} | {m['measured_ms']:.3f} | {m['predicted_ms']:.3f} |")
    return "\n".join(lines) + "\n"


def _staircase_png(lay: pd.DataFrame, cm: LatencyModel, path: Path, simulated: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = staircase_layer(1)
    m = lay[(lay["op"] == "conv") & (lay["cin"] == ref.cin) & (lay["kernel"] == ref.kernel) & (lay["stride"] == 1)
            & (lay["h_in"] == ref.h_in) & (lay["groups"] == 1)].sort_values("cout")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=90)
    if len(m):
        cmax = int(min(m["cout"].max(), 136))
        m = m[m["cout"] <= cmax]
        xs = np.arange(1, cmax + 1)
        ax.plot(xs, [cm.predict_layer(staircase_layer(int(c))) for c in xs], "-", lw=1.2, label="cost model")
        ax.plot(m["cout"], m["latency_ms"], "o", ms=4, label="measured" + (" (simulated)" if simulated else ""))
    ax.set_xlabel("output channels (3x3 conv, 64 in, 28x28)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{cm.board} / {cm.backend}: alignment {cm.alignment}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def profile(backend: Any, board: Any, out_dir: str | Path | None = None, quick: bool = False,
            runs: int | None = None, batch: int | None = None, show_progress: bool = True,
            max_macs: float | None = None, limit: int | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep on `backend`, then fit and write the model directory."""
    out = ensure_writable_dir(out_dir or model_dir_for(board.name, backend.name))
    csv = out / "measurements.csv"
    df = _read_csv(csv)
    local = not backend.simulated and backend.name == "local"
    if max_macs is None:
        max_macs = 1.5e8 if local else 4e9
    if local:  # a real CPU: quick-style staircases at fewer channel counts, fewer random layers
        configs = sweep(quick=True, max_macs=max_macs, n_random=40 if quick else 200,
                        channels=(8, 15, 16, 17, 32, 33, 64, 128) if quick else CPU_CHANNELS)
    else:
        configs = sweep(quick=quick, max_macs=max_macs)
    done = set(_layer_df(df)["key"]) if len(df) else set()
    todo = [s for s in configs if _key_str(s) not in done]
    if limit is not None:  # measure part of the sweep now; a rerun resumes with the rest
        todo = todo[:max(0, limit)]
    runs = runs or (15 if local else 20)
    batch = batch or (8 if local else (48 if backend.name == "ssh" else 200))
    kind = "cpu" if board.kind == "cpu" else "dpu"
    refs = REFERENCE_MODELS[kind][:3] if quick else REFERENCE_MODELS[kind]
    done_models = {(str(r["model"]), int(r["size"])) for _, r in df[df["kind"] == "model"].iterrows()}
    todo_models = [r for r in refs if r not in done_models]
    t0 = time.time()
    if todo:
        ui.info(f"profiling {len(todo)} layer configs on {board.name} / {backend.name} "
                f"({len(configs) - len(todo)} already in {csv})")
    from tqdm import tqdm
    import sys

    bar = tqdm(total=len(todo) + len(todo_models), desc="profile", file=sys.stderr, disable=not show_progress,
               dynamic_ncols=True, leave=False)
    now = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    for i in range(0, len(todo), batch):
        chunk = todo[i:i + batch]
        res = backend.measure_layers(chunk, runs=runs)
        rows = [{"kind": "layer", **r.spec.to_dict(), "model": "", "size": 0, "latency_ms": r.latency_ms,
                 "spread_ms": r.spread_ms, "runs": r.runs, "backend": backend.name, "simulated": backend.simulated,
                 "time_utc": now} for r in res]
        df = pd.concat([df, pd.DataFrame(rows)], ignore_index=True) if len(df) else pd.DataFrame(rows)
        _write_csv(csv, df)
        bar.update(len(chunk))
    from hw_prune.models import build_builtin

    for name, size in todo_models:
        nc = 1000 if size > 64 else 10
        model = build_builtin(name, nc, (1, 3, size, size))
        mm = backend.measure_model(model, (1, 3, size, size), runs=runs * 2)
        row = {"kind": "model", **{k: 0 for k in SPEC_FIELDS}, "op": "", "model": name, "size": size,
               "latency_ms": mm.latency_ms, "spread_ms": (mm.p90_ms - mm.latency_ms), "runs": mm.runs,
               "backend": backend.name, "simulated": backend.simulated, "time_utc": now}
        df = pd.concat([df, pd.DataFrame([row])], ignore_index=True)
        _write_csv(csv, df)
        bar.update(1)
    bar.close()
    measure_fast_path(backend, out)
    measure_s = time.time() - t0
    cm, report = fit_and_report(df, board.name, backend.name, backend.simulated, out, backend.provenance())
    report["measure_seconds"] = round(measure_s, 1)
    report["measured_now"] = len(todo) + len(todo_models)
    report["already_measured"] = len(configs) - len([s for s in configs if _key_str(s) not in done])
    write_json(out / "fit_report.json", report)
    return {"model_dir": str(out), "fit": report, "cost_model": cm}
