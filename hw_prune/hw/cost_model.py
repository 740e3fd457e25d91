"""A latency cost model fitted from measurements only (never from a simulator's or board's parameters).

Per layer class (conv by kernel/stride/grouping, depthwise, fc, pool, add, concat):

    t = c0 + combine(c1 * U + c1u * U * unaligned, cw * W + ca * A)     combine = max (roofline) or +

- U: work units counted in hardware tiles: h_out * ceil(w_out/p) * k^2 * groups * ceil(cin_g/a) *
  ceil(cout_g/a). The channel alignment `a` and pixel alignment `p` are found from the data: every
  candidate is fitted and the tile size that best explains the measured steps wins.
- unaligned: 1 when a channel count is not a multiple of `a` (a CPU's blocked kernels fall back to a slower
  path; on the DPU the fit leaves c1u at ~0 because the tiles already explain the steps).
- W, A: weight and activation elements (DDR traffic), c0: per-layer overhead. The combine mode is chosen once
  for the device (the better fit over all classes).
- On a CPU the channel multiple the search keeps to comes from paired probes instead (hw/fast_path.py):
  single-layer timings there scatter by +-15 %, too much for the fit to see a 16-channel fast path.
A whole model is `f0 + f1 * sum(layers)`, with f0/f1 fitted on the profile's whole reference models (the
per-frame cost); `calibrate()` corrects that with later whole-model measurements (the closed loop): a scale,
or an offset and a scale once the calibrated models span 1.5x (`correction`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from hw_prune.atomic import read_json, write_json
from hw_prune.errors import UserError
from hw_prune.hw.interfaces import LayerMeasurement, ModelPrediction
from hw_prune.layers import LayerSpec

FORMAT = "hw_prune-cost-model/1"
ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "latency_models"
CHANNEL_CANDIDATES = tuple(range(1, 33)) + (48, 64)
PIXEL_CANDIDATES = (1, 2, 4, 8, 16)
MIN_CLASS_POINTS = 6
FORCE_MODE: str | None = None  # 'max' / 'sum' to skip the choice (experiments)
SPEC_FIELDS = ("op", "cin", "cout", "kernel", "stride", "groups", "h_in", "w_in", "h_out", "w_out")


def layer_class(s: LayerSpec) -> str:
    """Fine class of a layer; falls back along FALLBACK when a class has too few measurements."""
    if s.op == "conv":
        k = "k1" if s.kernel == 1 else ("k3" if s.kernel <= 3 else "k5")
        st = "s2" if s.stride > 1 else "s1"
        return f"gconv-{st}" if s.groups > 1 else f"conv-{k}-{st}"
    if s.op == "dwconv":
        return "dwconv-s2" if s.stride > 1 else "dwconv-s1"
    return s.op


FALLBACK = {
    "conv-k1-s2": "conv-k1-s1", "conv-k3-s2": "conv-k3-s1", "conv-k5-s1": "conv-k3-s1", "conv-k5-s2": "conv-k3-s2",
    "conv-k3-s1": "conv-k1-s1", "gconv-s1": "conv-k3-s1", "gconv-s2": "gconv-s1", "dwconv-s2": "dwconv-s1", "dwconv-s1": "conv-k3-s1",
    "fc": "conv-k1-s1", "concat": "add", "add": "pool", "pool": "dwconv-s1",
}


def _features(df: pd.DataFrame, a: int, p: int) -> np.ndarray:
    """[U, U_unaligned, W, A] for every row at channel alignment a and pixel alignment p."""
    op = df["op"].to_numpy()
    cin, cout = df["cin"].to_numpy(float), df["cout"].to_numpy(float)
    k, g = df["kernel"].to_numpy(float), np.maximum(1, df["groups"].to_numpy(float))
    hi, wi, ho, wo = (df[c].to_numpy(float) for c in ("h_in", "w_in", "h_out", "w_out"))
    is_dw = op == "dwconv"
    is_conv = op == "conv"
    cin_g = np.where(is_conv, np.floor(cin / g), 1.0)
    cout_g = np.where(is_conv, np.floor(cout / g), cout)
    gg = np.where(is_conv, g, 1.0)
    pix = ho * np.ceil(wo / p)
    U = np.select(
        [is_conv, is_dw | (op == "pool"), op == "fc", op == "add"],
        [pix * k * k * gg * np.ceil(cin_g / a) * np.ceil(cout_g / a),
         pix * k * k * np.ceil(cout / a),
         np.ceil(cin / a) * np.ceil(cout / a),
         pix * np.ceil(cout / a)], 0.0)
    W = np.select([is_conv, is_dw, op == "fc"], [cin_g * cout * k * k, cout * k * k, cin * cout], 0.0)
    A = np.where(op == "fc", cin + cout, cin * hi * wi + cout * ho * wo)
    A = np.where(op == "add", 2 * cin * hi * wi + cout * ho * wo, A)
    # work done off the aligned fast path (e.g. a CPU's blocked-layout kernels need channel multiples)
    unal = np.select([is_conv, op == "fc"], [(cin_g % a != 0) | (cout_g % a != 0), (cin % a != 0) | (cout % a != 0)],
                     cout % a != 0)
    return np.stack([U, U * unal, W, A], axis=1)


def _rel_nnls(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative least squares on relative error: min || (X c)/y - 1 ||."""
    from scipy.optimize import nnls

    Xs = X / y[:, None]
    scale = np.maximum(Xs.max(axis=0), 1e-30)
    c, _ = nnls(Xs / scale, np.ones(len(y)), maxiter=2000)
    c = c / scale
    r = X @ c / y - 1
    return c, float(np.mean(r ** 2))


def _predict_class(par: dict[str, Any], F: np.ndarray) -> np.ndarray:
    comp = par["c1"] * F[:, 0] + par.get("c1u", 0.0) * F[:, 1]
    mem = par["cw"] * F[:, 2] + par["ca"] * F[:, 3]
    body = np.maximum(comp, mem) if par["mode"] == "max" else comp + mem
    return par["c0"] + body


def _fit_mode(F: np.ndarray, y: np.ndarray, mode: str, x0: np.ndarray) -> tuple[np.ndarray, float]:
    from scipy.optimize import least_squares

    scale = np.array([np.median(y), *[np.median(y) / max(np.median(F[:, j][F[:, j] > 0]) if (F[:, j] > 0).any()
                                                         else 1.0, 1e-30) for j in range(4)]])

    def res(z: np.ndarray) -> np.ndarray:
        c = np.exp(z) * scale
        par = {"c0": c[0], "c1": c[1], "c1u": c[2], "cw": c[3], "ca": c[4], "mode": mode}
        return _predict_class(par, F) / y - 1

    z0 = np.log(np.maximum(x0 / scale, 1e-6))
    # robust loss, scaled to the data's own noise: points far beyond it count less (outlier timings)
    f_scale = float(np.clip(1.5 * np.median(np.abs(res(z0))), 0.02, 0.5))
    r = least_squares(res, z0, method="trf", loss="soft_l1", f_scale=f_scale, max_nfev=400)
    c = np.exp(r.x) * scale
    return c, float(np.mean(res(r.x) ** 2))


def _nnls_err(df: pd.DataFrame, a: int, p: int) -> float:
    y = df["latency_ms"].to_numpy(float)
    return _rel_nnls(np.column_stack([np.ones(len(y)), _features(df, a, p)]), y)[1]


def _best(errs: dict[Any, float]) -> Any:
    """Smallest error; a candidate listed later (larger tile) must beat the best so far by 3%."""
    best = None
    for cand, err in errs.items():
        if best is None or err < errs[best] * 0.97:
            best = cand
    return best


def find_alignment(groups: list[pd.DataFrame], channel_cands: Iterable[int] = CHANNEL_CANDIDATES,
                   pixel_cands: Iterable[int] = PIXEL_CANDIDATES) -> int:
    """The channel tile that best explains the measured steps of all convolution classes together."""
    total = {}
    for a in channel_cands:
        total[a] = sum(len(g) * min(_nnls_err(g, a, p) for p in pixel_cands) for g in groups)
    return int(_best(total))


def _fit_class(df: pd.DataFrame, channel_cands: Iterable[int], pixel_cands: Iterable[int]) -> dict[str, Any]:
    """Fit one class: every (alignment, pixel alignment, combine mode) candidate, keep the best."""
    y = df["latency_ms"].to_numpy(float)
    fits: dict[tuple[int, int, str], tuple[np.ndarray, float]] = {}
    for a in channel_cands:
        for p in pixel_cands:
            F = _features(df, a, p)
            one = np.ones((len(y), 1))
            c_lin, _ = _rel_nnls(np.column_stack([one, F]), y)
            # starts for the roofline: the additive fit, and compute-only / memory-only fits side by side
            c_u, _ = _rel_nnls(np.column_stack([one, F[:, :2]]), y)
            c_m, _ = _rel_nnls(np.column_stack([one, F[:, 2:]]), y)
            starts = [c_lin, np.array([min(c_u[0], c_m[0]), c_u[1], c_u[2], c_m[1], c_m[2]])]
            for mode in ("max", "sum"):
                best_fit = None
                for x0 in starts[:2 if mode == "max" else 1]:
                    x0 = np.maximum(x0, 1e-12)
                    x0[0] = max(x0[0], 0.05 * float(np.min(y)))
                    f = _fit_mode(F, y, mode, x0)
                    if best_fit is None or f[1] < best_fit[1]:
                        best_fit = f
                fits[(a, p, mode)] = best_fit
    out = {}
    for mode in ("max", "sum"):
        a, p = _best({k[:2]: v[1] for k, v in fits.items() if k[2] == mode})
        c, err = fits[(a, p, mode)]
        par = {"a": int(a), "p": int(p), "mode": mode, "c0": float(c[0]), "c1": float(c[1]), "c1u": float(c[2]),
               "cw": float(c[3]), "ca": float(c[4]), "n": int(len(y)), "err": err}
        pred = _predict_class(par, _features(df, a, p))
        par["mape"] = float(np.mean(np.abs(pred / y - 1)))
        out[mode] = par
    return out


def _to_frame(records: Any) -> pd.DataFrame:
    if isinstance(records, pd.DataFrame):
        df = records.copy()
    else:
        rows = []
        for r in records:
            if isinstance(r, LayerMeasurement):
                rows.append({**r.spec.to_dict(), "latency_ms": r.latency_ms})
            elif isinstance(r, dict):
                rows.append(r)
            else:
                raise TypeError(f"cannot fit on {type(r).__name__}")
        df = pd.DataFrame(rows)
    missing = [c for c in (*SPEC_FIELDS, "latency_ms") if c not in df.columns]
    if missing:
        raise UserError(f"measurements lack columns {missing}; re-run hw_prune profile")
    df = df[df["latency_ms"] > 0].reset_index(drop=True)
    return df


def _spec_rows(specs: Sequence[LayerSpec]) -> pd.DataFrame:
    return pd.DataFrame([{k: getattr(s, k) for k in SPEC_FIELDS} for s in specs])


def _model_records(model_records: Any) -> list[dict[str, Any]]:
    """Normalise whole-model measurements to [{'name', 'specs': [LayerSpec], 'latency_ms'}]."""
    out = []
    for i, r in enumerate(model_records or []):
        if isinstance(r, dict):
            specs = [s if isinstance(s, LayerSpec) else LayerSpec.from_dict(s) for s in r["specs"]]
            out.append({"name": r.get("name", f"model{i}"), "specs": specs, "latency_ms": float(r["latency_ms"])})
        else:
            specs, ms = r[0], r[1]
            out.append({"name": r[2] if len(r) > 2 else f"model{i}", "specs": list(specs), "latency_ms": float(ms)})
    return out


@dataclass
class LatencyModel:
    """Fitted per-class parameters plus the per-frame term. Implements interfaces.CostModel."""

    board: str
    backend: str
    classes: dict[str, dict[str, Any]]
    frame: dict[str, float] = field(default_factory=lambda: {"f0": 0.0, "f1": 1.0})
    simulated: bool = False
    model_records: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    model_dir: str | None = None
    calibration: list[dict[str, Any]] = field(default_factory=list)  # whole models measured after profiling
    CALIBRATION_WINDOW = 3  # the latest measurements are most like the next model (a pruning loop moves slowly)

    # ---- alignment -----------------------------------------------------------------------
    @property
    def alignment(self) -> int:
        """Channel multiple the hardware rewards, which the width search keeps to: the tile found for dense
        convolutions, or lcm(tile, block) where paired probes show a CPU's fast-path block (hw/fast_path.py)."""
        return int(self.meta.get("alignment", 1))

    @property
    def tile(self) -> int:
        """The channel tile of the fitted ceil(channels / tile) staircase."""
        return int(self.meta.get("tile", self.alignment))

    def _params_for(self, cls: str) -> dict[str, Any]:
        seen = set()
        while cls not in self.classes:
            seen.add(cls)
            cls = FALLBACK.get(cls, "conv-k1-s1")
            if cls in seen:
                return next(iter(self.classes.values()))
        return self.classes[cls]

    # ---- prediction -----------------------------------------------------------------------
    def predict_layers(self, specs: Sequence[LayerSpec]) -> np.ndarray:
        if not specs:
            return np.zeros(0)
        df = _spec_rows(specs)
        out = np.zeros(len(df))
        cls = np.array([layer_class(s) for s in specs])
        for c in np.unique(cls):
            idx = np.where(cls == c)[0]
            par = self._params_for(str(c))
            out[idx] = _predict_class(par, _features(df.iloc[idx], par["a"], par["p"]))
        return out

    def predict_layer(self, spec: LayerSpec) -> float:
        return float(self.predict_layers([spec])[0])

    def frame_ms(self) -> float:
        return float(self.frame["f0"])

    def _base_ms(self, specs: Sequence[LayerSpec]) -> float:
        return float(self.frame["f0"] + self.frame["f1"] * self.predict_layers(list(specs)).sum())

    @property
    def scale(self) -> float:
        """Correction from calibrate(): geometric mean of measured / predicted over the latest measurements."""
        recs = self.calibration[-self.CALIBRATION_WINDOW:]
        if not recs:
            return 1.0
        return float(np.exp(np.mean([np.log(r["latency_ms"] / r["base_ms"]) for r in recs])))

    def correction(self) -> tuple[float, float]:
        """(offset_ms, scale) applied to the uncalibrated prediction: measured ~ offset + scale * predicted.
        With calibrations of models whose predictions differ by >= 1.5x (the baseline and a much smaller pruned
        model of the same network) both are fitted on all of them: the per-frame term fitted on the profile's
        reference models can be far off for one network (host-cpu: isolated layers pay onnxruntime's per-run
        overhead and layout reorders that a whole graph pays once, so small models were predicted 2-3x too
        slow and the search over-pruned). Otherwise only the scale (geometric mean of the latest ratios)."""
        recs = self.calibration
        if len(recs) >= 2:
            x = np.array([r["base_ms"] for r in recs])
            y = np.array([r["latency_ms"] for r in recs])
            if x.max() >= 1.5 * x.min():
                # least squares on relative error: minimise sum ((a + k x) / y - 1)^2
                A = np.column_stack([1.0 / y, x / y])
                a, k = np.linalg.lstsq(A, np.ones(len(y)), rcond=None)[0]
                if k > 0 and a + k * x.min() > 0:
                    return float(a), float(k)
        return 0.0, self.scale

    def predict_model(self, specs: Sequence[LayerSpec]) -> ModelPrediction:
        a, k = self.correction()
        per = self.predict_layers(list(specs)) * self.frame["f1"] * k
        lat = float(self.frame["f0"] * k + per.sum())
        # an offset below zero (overstated per-frame cost) never takes a prediction under a fifth of the scaled one
        lat = max(lat + a, 0.2 * lat)
        return ModelPrediction(latency_ms=lat, fps=1e3 / lat if lat > 0 else math.inf,
                               per_layer_ms=[float(v) for v in per], fits=True)

    # ---- per-frame term and calibration -------------------------------------------------------
    def _fit_frame(self) -> None:
        recs = self.model_records
        if not recs:
            self.frame = {"f0": 0.0, "f1": 1.0, "n_models": 0}
            return
        s = np.array([self.predict_layers(r["specs"]).sum() for r in recs])
        y = np.array([r["latency_ms"] for r in recs])
        if len(recs) >= 3 and np.ptp(s) > 0.2 * np.mean(s):
            # y = f0 + f1 * s on relative error, with a robust loss so one odd model does not tilt the line
            from scipy.optimize import least_squares

            X = np.column_stack([np.ones(len(s)), s]) / y[:, None]
            x0 = np.linalg.lstsq(X, np.ones(len(s)), rcond=None)[0]
            x0 = np.array([float(np.clip(x0[0], -0.5 * y.min(), y.min())), float(np.clip(x0[1], 0.2, 5.0))])
            r = least_squares(lambda f: X @ f - 1, x0, loss="soft_l1", f_scale=0.1,
                              bounds=([-0.5 * y.min(), 0.1], [y.min(), 10.0]))
            f0, f1 = r.x
        else:
            f0, f1 = float(np.median(y - s)), 1.0
        self.frame = {"f0": float(f0), "f1": float(f1), "n_models": len(recs)}

    def calibrate(self, specs: Sequence[LayerSpec], measured_ms: float, name: str = "calibration") -> "LatencyModel":
        """A copy corrected by this whole-model measurement: the prediction is scaled by measured / predicted
        (averaged over the last CALIBRATION_WINDOW calibrations), so the calibrating model is predicted at its
        measured latency and similar models move with it. The original stays unchanged."""
        if not measured_ms > 0:
            raise UserError(f"calibration latency {measured_ms} ms must be positive")
        new = copy.deepcopy(self)
        new.calibration = [*new.calibration, {"name": name, "latency_ms": float(measured_ms),
                                              "base_ms": self._base_ms(specs)}]
        return new

    # ---- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "board": self.board, "backend": self.backend, "simulated": self.simulated,
                "alignment": self.alignment, "classes": self.classes, "frame": self.frame,
                "calibration": self.calibration,
                "model_records": [{"name": r["name"], "latency_ms": r["latency_ms"],
                                   "specs": [s.to_dict() for s in r["specs"]]} for r in self.model_records],
                "meta": self.meta}

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / "model.json"
        write_json(path, self.to_dict())
        self.model_dir = str(model_dir)
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any], model_dir: str | None = None) -> "LatencyModel":
        if d.get("format") != FORMAT:
            raise UserError(f"cost model in {model_dir} has format {d.get('format')!r}, expected {FORMAT}; "
                            "re-run hw_prune profile")
        return cls(board=d["board"], backend=d["backend"], classes=d["classes"], frame=d["frame"],
                   simulated=bool(d.get("simulated", False)), model_records=_model_records(d.get("model_records")),
                   meta=d.get("meta", {}), model_dir=model_dir, calibration=list(d.get("calibration", [])))


CostModel = LatencyModel  # the concrete class behind the interfaces.CostModel protocol


def fit_cost_model(records: Any, model_records: Any = None, board: str = "", backend: str = "",
                   simulated: bool = False, meta: dict[str, Any] | None = None,
                   fast_path: Sequence[dict[str, Any]] | None = None) -> LatencyModel:
    """Fit from layer measurements (LayerMeasurement list or DataFrame with spec columns + latency_ms)
    and optional whole-model measurements ([{'name', 'specs', 'latency_ms'}] or (specs, ms) pairs).
    `fast_path`: paired probe rows (hw/fast_path.py); the search's alignment becomes lcm(tile, the block
    they show the hardware rewards)."""
    df = _to_frame(records)
    if len(df) < MIN_CLASS_POINTS:
        raise UserError(f"only {len(df)} layer measurements; profile more configurations (hw_prune profile)")
    specs = [LayerSpec(**{k: (int(r[k]) if k != "op" else str(r[k])) for k in SPEC_FIELDS}) for _, r in df.iterrows()]
    df["cls"] = [layer_class(s) for s in specs]
    classes: dict[str, dict[str, Any]] = {}
    counts = df["cls"].value_counts()
    fitted = [c for c in counts.index if counts[c] >= MIN_CLASS_POINTS]
    conv_like = [df[df["cls"] == c] for c in fitted if c.startswith(("conv", "gconv"))]
    align = find_alignment(conv_like) if conv_like else 1
    both: dict[str, dict[str, dict[str, Any]]] = {}
    for c in sorted(fitted):
        sub = df[df["cls"] == c]
        # ALU / memory ops may not share the conv engine's tile: let them choose between none and it
        cands = (align,) if c.startswith(("conv", "gconv", "fc")) else tuple(sorted({1, align}))
        both[c] = _fit_class(sub, cands, PIXEL_CANDIDATES)
    # one way of combining compute and memory for the whole device (roofline or additive), chosen on all
    # classes together, so that a class with few measurements does not pick the other by chance
    mode = FORCE_MODE or min(("max", "sum"), key=lambda m: sum(v[m]["n"] * v[m]["err"] for v in both.values()))
    classes = {c: {k: v for k, v in both[c][mode].items() if k != "err"} for c in both}
    if not classes:
        raise UserError("no layer class has enough measurements to fit; profile more configurations")
    extra: dict[str, Any] = {"alignment": align, "tile": align}
    if fast_path:
        from hw_prune.hw.fast_path import choose_block

        fp = choose_block(fast_path, align)
        extra.update({"alignment": fp["width_multiple"], "fast_path": fp})
    m = LatencyModel(board=board, backend=backend, classes=classes, simulated=simulated,
                     model_records=_model_records(model_records), meta={**(meta or {}), **extra})
    m._fit_frame()
    return m


def model_dir_for(board: str, backend: str = "sim", root: str | Path | None = None) -> Path:
    return Path(root) if root else MODELS_DIR / f"{board}-{backend}"


def load_cost_model(board: str, backend: str = "sim", model_dir: str | None = None) -> LatencyModel:
    """The fitted model in latency_models/<board>-<backend>/ (or model_dir)."""
    from hw_prune.hw.boards import load_board

    name = load_board(board).name if model_dir is None else board
    d = model_dir_for(name, backend, model_dir)
    if not (d / "model.json").is_file():
        raise UserError(f"no fitted latency model for board '{name}' with backend '{backend}' ({d}/model.json); "
                        f"run: hw_prune profile --board {board} --backend {backend}")
    return LatencyModel.from_dict(read_json(d / "model.json", "cost model"), str(d))


def predict_for_stat(bundle: Any, board: str, backend: str = "sim") -> dict[str, Any]:
    """What `hw_prune stat --board B` merges into its output."""
    from hw_prune.hw.backends import default_backend
    from hw_prune.layers import extract_layer_specs

    backend = backend or default_backend(board)
    cm = load_cost_model(board, backend)
    specs = extract_layer_specs(bundle.model, bundle.input_shape)
    pred = cm.predict_model(specs)
    return {"predicted_latency_ms": pred.latency_ms, "predicted_fps": pred.fps,
            "predicted_frame_ms": cm.frame_ms(),
            "per_layer": [{"name": s.name, "op": s.op, "predicted_ms": v} for s, v in zip(specs, pred.per_layer_ms)],
            "cost_model": cm.model_dir, "board": cm.board, "backend": cm.backend, "simulated": cm.simulated,
            "alignment": cm.alignment}
