"""Latency-targeted pruning for FINN dataflow targets: `prune --target-fps F --board pynq-z2
[--backend finn-estimate]`.

A FINN design runs at the speed of its slowest layer and FINN folds every layer (PE / SIMD) to reach a
target F, so at a fixed F the cost of a set of widths is the resources of the folded design, additive
over layers (hw_prune.hw.finn_cost.FinnFoldingCost, budget unit: utilization of the part).

1. Baseline: real FINN estimate builds of the unpruned model (at F, and the highest fps that fits);
   the analytical model is calibrated on them.
2. Feasibility: every group at its smallest allowed width must fit at F (analytical; confirmed with a
   FINN build when the model says no); otherwise a one-line error names the best fps reachable.
3. Closed loop (at most MAX_BUILDS pruned designs built with FINN): width search at budget = max_util,
   prune, FINN estimate build at F. A design that does not fit rescales the model by FINN's totals and
   tightens the budget; one that fits with headroom rescales it and loosens the budget. The fitting
   design that keeps the most importance wins.
Success: FINN's design at F fits the part and FINN's highest fitting fps is >= F. Every fps and
resource number is a FINN ESTIMATE (simulated=True, backend finn-estimate), never measured on a board.
"""

from __future__ import annotations

import math
import time
from typing import Any


from hw_prune import ui
from hw_prune.errors import UserError
from hw_prune.hw.interfaces import ModelMeasurement
from hw_prune.layers import extract_layer_specs

NAME = "finn-estimate"
MAX_BUILDS = 4        # FINN estimate searches of pruned designs per run
HEADROOM = 0.93       # a fitting design using less than this share of max_util is worth loosening


def _measurement(at: Any, best: Any, board: str, prov: dict[str, Any]) -> ModelMeasurement:
    """A FINN estimate as a ModelMeasurement: fps = highest fps that fits (0 when nothing fits)."""
    fps = float(best.estimated_fps) if best is not None and best.fits else 0.0
    lat = 1000.0 / fps if fps else math.inf
    return ModelMeasurement(latency_ms=lat, p90_ms=lat, p99_ms=lat, fps=fps, fps_mt=fps, backend=NAME,
                            simulated=True, board=board, runs=0, per_layer_ms=None,
                            provenance={**prov, "at_target": _rep(at), "max_fit": _rep(best)})


def _rep(r: Any) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"target_fps": r.target_fps, "estimated_fps": float(r.estimated_fps), "fits": bool(r.fits),
            "luts": float(r.luts), "brams": float(r.brams), "dsps": float(r.dsps), "urams": float(r.urams),
            "utilization": {k: float(v) for k, v in r.utilization.items()}, "slowest_layer": r.slowest_layer}


def _max_util(r: Any) -> float:
    return max(float(v) for k, v in r.utilization.items() if math.isfinite(v))


def run_finn_prune(args: Any, bundle: Any, splits: Any, board: str) -> dict[str, Any]:
    """`prune --target-fps F` on a FINN board. Returns the --json dict (same keys as other prune runs)."""
    from types import SimpleNamespace

    from hw_prune.atomic import ensure_writable_dir
    from hw_prune.hw.finn_backend import FinnEstimateBackend
    from hw_prune.hw.finn_cost import FinnFoldingCost
    from hw_prune.prune.latency_target import (LatencyPruner, LoopResult, Round, _flops, _importance, _out_paths,
                                               _params, load_sensitivity, per_layer_table, plot_per_layer,
                                               resolve_target_fps, save_outputs)
    from hw_prune.provenance import provenance

    t_start = time.time()
    shape = tuple(bundle.input_shape)
    if int(getattr(args, "iterations", 1) or 1) > 1:
        raise UserError("FINN targets prune in one step for now; use --iterations 1 (with --finetune-epochs E "
                        "to finetune the result)")
    ft_epochs = getattr(args, "finetune_epochs", None)
    ft_epochs = int(ft_epochs) if ft_epochs is not None else (2 if splits is not None else 0)
    resolve_target_fps(args, 1.0)  # bad values fail before any build
    model_path, plan_path, png_path = _out_paths(args, bundle)
    ensure_writable_dir(model_path.parent)
    wb, ab = int(getattr(args, "weight_bits", None) or 4), int(getattr(args, "act_bits", None) or 4)
    max_util = getattr(args, "max_util", None)
    clock_ns = getattr(args, "clock_ns", None)
    backend = FinnEstimateBackend(board, wb, ab, max_util, clock_ns, progress=ui.info)
    bname, mu = backend.board, backend.max_util
    model = bundle.model.eval()
    specs0 = extract_layer_specs(model, shape)

    # 1. baseline: FINN's highest fitting fps decides what --speedup means; then the build at F
    if getattr(args, "speedup", None) is None:
        target_fps, how = resolve_target_fps(args, 0.0)
        at0, best0 = backend.estimate(model, shape, target_fps, search=True)
        base_fps = float(best0.estimated_fps) if best0.fits else 0.0
    else:
        _, best0 = backend.estimate(model, shape, 1, search=True)
        base_fps = float(best0.estimated_fps) if best0.fits else 0.0
        if base_fps <= 0:
            raise UserError(f"{bundle.name} does not fit {bname} at all (FINN estimate), so --speedup has no "
                            "baseline; use --target-fps")
        target_fps, how = resolve_target_fps(args, base_fps)
        at0, _ = backend.estimate(model, shape, target_fps, search=False)
    cost = FinnFoldingCost(board, wb, ab, mu, clock_ns, target_fps).bind(specs0)
    model_before = cost.totals(specs0, cost.T)
    cost.calibrate([(specs0, at0), (specs0, best0)])
    base = _measurement(at0, best0, bname, backend.provenance())
    pred0 = cost.predict_model(specs0)
    ui.info(f"baseline {bundle.name} {shape[2]}x{shape[3]} on {bname} (FINN estimate, SIMULATED, "
            f"w{wb}a{ab}): highest fps that fits {base_fps:.1f} (analytical model {pred0.fps:.1f}); at {target_fps:.1f} "
            f"fps FINN needs LUT {at0.luts:.0f} / BRAM {at0.brams:.0f} / DSP {at0.dsps:.0f} "
            f"({100 * _max_util(at0):.1f}% of the part, model {100 * model_before.max_util:.1f}%; limit {100 * mu:.0f}%)")

    sens = load_sensitivity(getattr(args, "workspace", None), model)
    pruner = LatencyPruner(SimpleNamespace(cost=cost), shape, getattr(args, "criterion", None) or "l2",  # type: ignore[arg-type]
                           getattr(args, "channel_divisible", 1) or 1, tuple(getattr(args, "exclude", None) or ()),
                           splits, sens)
    groups = pruner.groups(model)
    rounds: list[Round] = []
    fastest = None
    search_s = 0.0
    if at0.fits and at0.estimated_fps >= target_fps:
        ui.info(f"{bundle.name} already fits {bname} at {target_fps:.1f} fps: nothing to prune")
        loop = LoopResult(model, {g.name: g.width for g in groups}, groups, specs0, pred0, base, True)
        at1, best1, pruned, meas1 = at0, best0, model, base
    else:
        scores = _importance(model, shape, groups, pruner.criterion, splits)
        ws = pruner.search(model, groups, scores)
        # 2. reachable: the smallest allowed widths
        wmin, pmin = ws.fastest()
        fastest = {"predicted_fps": float(pmin.fps), "measured_fps": None}
        if not pmin.fits:
            m_at, m_best = backend.estimate(pruner.apply(model, wmin, scores), shape, target_fps, search=True)
            best_fps = float(m_best.estimated_fps) if m_best.fits else 0.0
            fastest["measured_fps"] = best_fps
            if not (m_at.fits and m_at.estimated_fps >= target_fps):
                raise UserError(
                    f"target {target_fps:.1f} fps is beyond what {bundle.name} can reach on {bname} (FINN estimate, "
                    f"w{wb}a{ab}, <= {100 * mu:.0f}% of the part): with every channel group at its smallest allowed "
                    f"width the highest fps that fits is {best_fps:.1f}; ask for --target-fps <= {math.floor(best_fps)}")
        ui.info(f"reachable: {base_fps:.1f} .. {pmin.fps:.1f} fps (analytical model, smallest allowed widths)")
        # 3. closed loop
        budget = mu
        lo_b, hi_b = 0.0, math.inf       # budgets known to fit / not to fit
        best: tuple | None = None        # (loss, widths, pruned, at, best)
        tried: dict[tuple, tuple] = {}
        for r_i in range(MAX_BUILDS):
            res = ws.run(budget)
            search_s += res.seconds
            key = tuple(sorted(res.widths.items()))
            if key in tried:
                break                    # the search gives the same widths again: nothing new to learn
            pruned = pruner.apply(model, res.widths, scores)
            at, mx = backend.estimate(pruned, shape, target_fps, search=True)
            tried[key] = (pruned, at, mx)
            ok = bool(at.fits and at.estimated_fps >= target_fps and mx.fits and mx.estimated_fps >= target_fps)
            rounds.append(Round(budget, float(res.fps), float(mx.estimated_fps) if mx.fits else 0.0,
                                dict(res.widths), False))
            ui.info(f"[prune] round {r_i + 1}: budget {100 * budget:.1f}% of the part -> model {100 * res.latency_ms:.1f}%, "
                    f"FINN {100 * _max_util(at):.1f}% at {target_fps:.1f} fps ({'fits' if ok else 'does NOT fit'}); "
                    f"FINN highest fitting fps {mx.estimated_fps if mx.fits else 0.0:.1f}")
            loss = ws.loss(res.widths)
            if ok and (best is None or loss < best[0]):
                best = (loss, dict(res.widths), pruned, at, mx, res)
            # teach the model what FINN reported for this design, then move the budget
            f = cost.rescale(res.specs, at)
            ws.set_cost(cost)
            rounds[-1].calibrated = True
            exact = all(abs(v - 1) < 0.01 for v in f.values())
            ui.info(f"[prune] FINN / model on this design: LUT x{f['lut']:.3f}, BRAM x{f['bram']:.3f}, "
                    f"DSP x{f['dsp']:.3f}")
            if ok:
                lo_b = max(lo_b, budget)
                # the model agreed with FINN: the search's answer at max_util is final (the next allowed width
                # steps over the limit); otherwise search again with the rescaled model (loosens)
                if exact or _max_util(at) >= HEADROOM * mu or res.widths == ws.full:
                    break
                nb = mu
            else:
                hi_b = min(hi_b, budget)
                nb = min(budget, mu) * (0.98 if exact else 1.0)  # the rescaled model already predicts this miss
            if not (lo_b <= nb < hi_b):
                nb = (lo_b + hi_b) / 2 if math.isfinite(hi_b) else nb
            budget = nb
        if best is None:
            raise UserError(f"no pruned design fit {bname} at {target_fps:.1f} fps within {MAX_BUILDS} FINN estimate "
                            f"builds; ask for a lower --target-fps or raise --max-util")
        _, widths, pruned, at1, best1, res = best
        meas1 = _measurement(at1, best1, bname, backend.provenance())
        loop = LoopResult(pruned, widths, groups, list(res.specs), None, meas1, True, rounds, search_s, scores)

    if ft_epochs > 0 and splits is not None and pruned is not model:
        from hw_prune.train import train_model

        kw = {k: getattr(args, k) for k in ("lr", "optimizer", "batch_size") if getattr(args, k, None)}
        kw.setdefault("lr", 0.01 if kw.get("optimizer") == "sgd" else 5e-4)  # gentler, as `hw_prune finetune`
        train_model(pruned, splits, epochs=ft_epochs, label="finetune", keep_best=True, **kw)
        # shapes and bits decide the design, but FINN sizes accumulators from the trained weights: check again
        at1, best1 = backend.estimate(pruned, shape, target_fps, search=True)
        meas1 = _measurement(at1, best1, bname, backend.provenance())
        loop.measured = meas1
        ui.info(f"[prune] after {ft_epochs} finetune epoch(s): FINN {100 * _max_util(at1):.1f}% at {target_fps:.1f} fps, "
                f"highest fitting fps {best1.estimated_fps if best1.fits else 0.0:.1f}")

    specs1 = extract_layer_specs(pruned, shape)
    pred1 = cost.predict_model(specs1)
    pred0 = cost.predict_model(specs0)
    loop.predicted = pred1
    flops0, flops1 = _flops(model, shape), _flops(pruned, shape)
    rows = per_layer_table(specs0, pred0.per_layer_ms, None, specs1, pred1.per_layer_ms, None)
    for r in rows:  # the per-layer numbers of a FINN target are shares of the part, not milliseconds
        r["predicted_util_before"], r["predicted_util_after"] = r.pop("predicted_ms_before"), r.pop("predicted_ms_after")
        r["predicted_ms_before"] = r["predicted_ms_after"] = None
    in_window = bool(at1.fits and at1.estimated_fps >= target_fps and best1 is not None and best1.fits
                     and best1.estimated_fps >= target_fps)
    bprov = backend.provenance()
    prov = provenance(bname, NAME, True, command="prune", target=how, backend_provenance=bprov,
                      note="every fps and resource number is a FINN ESTIMATE (estimate-only build), not measured "
                           "on a board")
    latency_extra = {
        "target_fps": target_fps, "target": how, "window": [target_fps, None], "in_window": in_window,
        "board": bname, "backend": NAME, "simulated": True, "alignment": int(cost.alignment),
        "finn": {"part": backend.target.part, "clock_ns": backend.target.clock_ns, "weight_bits": wb, "act_bits": ab,
                 "max_util": mu, "budget_unit": "utilization of the part (max over LUT, BRAM_18K, DSP)",
                 "scales": dict(cost.scales), "baseline_at_target": _rep(at0), "baseline_max_fit": _rep(best0),
                 "pruned_at_target": _rep(at1), "pruned_max_fit": _rep(best1),
                 "model_vs_finn_baseline": {"luts": model_before.luts / at0.luts - 1 if at0.luts else None,
                                            "brams": model_before.brams / at0.brams - 1 if at0.brams else None}},
        "baseline": {"measured_fps": float(base.fps), "predicted_fps": float(pred0.fps)},
        "pruned": {"measured_fps": float(meas1.fps), "predicted_fps": float(pred1.fps)},
        "reachable": fastest, "steps": [{"target_fps": target_fps, "measured_fps": float(meas1.fps),
                                          "rounds": [r.to_dict() for r in loop.rounds]}],
        "per_layer": rows, "finn_builds": 1 + len(loop.rounds), "search_seconds": float(search_s),
    }
    top1 = None
    if splits is not None:
        from hw_prune.data import make_loader
        from hw_prune.train import evaluate

        top1 = float(evaluate(pruned, make_loader(splits.val, batch_size=256))["top1"])
    save_outputs(bundle, pruned, shape, loop, flops0, flops1, prov, latency_extra, args, plan_path, model_path, top1)
    plot_rows = [{**r, "predicted_ms_before": r["predicted_util_before"], "predicted_ms_after": r["predicted_util_after"]}
                 for r in rows]
    plot_per_layer(plot_rows, png_path, f"{bundle.name} on {bname} (FINN estimate, simulated): share of the part per "
                   f"layer at {target_fps:.0f} fps (y axis: utilization, not ms)")
    params0, params1 = _params(model), _params(pruned)
    u0, u1 = _max_util(at0), _max_util(at1)
    ui.table([
        {"": "FLOPs (M)", "before": flops0 / 1e6, "after": flops1 / 1e6, "ratio": flops1 / max(flops0, 1)},
        {"": "params (K)", "before": params0 / 1e3, "after": params1 / 1e3, "ratio": params1 / max(params0, 1)},
        {"": "predicted fps (model, max fit)", "before": float(pred0.fps), "after": float(pred1.fps),
         "ratio": pred1.fps / pred0.fps if pred0.fps else float("nan")},
        {"": "FINN-estimated fps (max fit, SIMULATED)", "before": float(base.fps), "after": float(meas1.fps),
         "ratio": meas1.fps / base.fps if base.fps else float("nan")},
        {"": f"FINN util. % at {target_fps:.0f} fps", "before": 100 * u0, "after": 100 * u1, "ratio": u1 / u0 if u0 else float("nan")},
        {"": f"FINN LUT at {target_fps:.0f} fps", "before": float(at0.luts), "after": float(at1.luts),
         "ratio": at1.luts / at0.luts if at0.luts else float("nan")},
        {"": f"FINN BRAM_18K at {target_fps:.0f} fps", "before": float(at0.brams), "after": float(at1.brams),
         "ratio": at1.brams / at0.brams if at0.brams else float("nan")},
    ], title=f"{bundle.name} pruned for {target_fps:.1f} fps on {bname} (FINN estimates)")
    ui.info(f"FINN estimate: the pruned design {'fits' if in_window else 'does NOT fit'} {backend.target.part} at "
            f"{target_fps:.1f} fps ({100 * u1:.1f}% <= {100 * mu:.0f}%), highest fitting fps {meas1.fps:.1f} "
            f"(estimates, not measured on a board); model {model_path}, plan {plan_path} "
            f"({time.time() - t_start:.0f}s)")
    return {"model": str(model_path), "plan": str(plan_path), "plot": str(png_path), "flops_before": flops0,
            "flops_after": flops1, "params_before": params0, "params_after": params1,
            "predicted_fps": float(pred1.fps), "measured_fps": float(meas1.fps), "baseline_fps": float(base.fps),
            "baseline_top1": bundle.meta.get("top1"), "target_fps": target_fps, "in_window": in_window, "top1": top1,
            "backend": NAME, "simulated": True, "board": bname, "widths": loop.widths, "reachable": fastest,
            "utilization": {k: float(v) for k, v in at1.utilization.items()}, "max_util": mu,
            "finn_builds": 1 + len(loop.rounds)}


def is_finn_target(board: str, backend: str | None) -> bool:
    """Whether a latency target goes to this loop: --backend finn-estimate, or a FINN-only board by default."""
    if backend == NAME:
        return True
    if backend:
        return False
    from hw_prune.hw.backends import default_backend
    from hw_prune.hw.boards import load_board

    return default_backend(load_board(board)) == NAME


__all__ = ["run_finn_prune", "is_finn_target"]
