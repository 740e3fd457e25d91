"""Iterative prune -> finetune, generic over how a step prunes (ratio, uniform, latency target ...).

`step_fn(bundle, fraction) -> (bundle, plan)` prunes the CURRENT model toward `fraction` (0..1] of
the final goal. Steps go from large to small (weights K, K-1, ..., 1). After each step the model is
finetuned; if top-1 then drops more than `max_drop` below the baseline, the step is retried with
half the increment (at most `max_retries` times; an accepted smaller step adds an iteration, and
after a step that still fails the rest of the schedule runs without retries). Every accepted iteration is saved to `workdir`
with a state file, so a rerun resumes after the last finished iteration (and inside a finetune,
from its per-epoch checkpoint). The best accepted model that reached the goal is `workdir/best.pt`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hw_prune import ui
from hw_prune.atomic import ensure_writable_dir, read_json, write_json
from hw_prune.errors import UserError
from hw_prune.models.io import ModelBundle, load_model, save_model
from hw_prune.prune.plan import Plan

STATE = "iterative_state.json"
StepFn = Callable[[ModelBundle, float], tuple[ModelBundle, Plan]]


@dataclass
class IterativeResult:
    bundle: ModelBundle
    plan: Plan
    history: list[dict[str, Any]] = field(default_factory=list)
    best_path: Path | None = None
    baseline_top1: float | None = None
    top1: float | None = None


def schedule(iterations: int) -> list[float]:
    """Cumulative fractions of the goal, steps from large to small: K=2 -> [0.667, 1.0]."""
    if iterations < 1:
        raise UserError(f"--iterations {iterations} must be >= 1")
    w = list(range(iterations, 0, -1))
    tot = sum(w)
    acc, out = 0, []
    for x in w:
        acc += x
        out.append(round(acc / tot, 6))
    out[-1] = 1.0
    return out


def run_iterative(bundle: ModelBundle, step_fn: StepFn, iterations: int, finetune_epochs: int, splits: Any,
                  max_drop: float | None, workdir: str | Path, *, resume_key: dict[str, Any] | None = None,
                  train_kwargs: dict[str, Any] | None = None, baseline_top1: float | None = None,
                  max_retries: int = 2, progress: bool = True) -> IterativeResult:
    from hw_prune.train import evaluate, train_model
    from hw_prune.data import make_loader

    if finetune_epochs > 0 and splits is None:
        raise UserError("finetuning needs data; pass --data (or --finetune-epochs 0)")
    wd = ensure_writable_dir(workdir)
    key = {"iterations": iterations, "finetune_epochs": finetune_epochs, "max_drop": max_drop,
           **(resume_key or {})}
    val_loader = make_loader(splits.val, 256) if splits is not None else None
    state_path = wd / STATE
    state: dict[str, Any] = {"key": key, "accepted": [], "attempts": []}
    if state_path.is_file():
        old = read_json(state_path, "iterative state")
        if old.get("key") == key:
            state = old
        elif progress:
            ui.info(f"[prune] {state_path} belongs to other settings; starting over in {wd}")
    if baseline_top1 is None and val_loader is not None:
        baseline_top1 = state.get("baseline_top1")
        if baseline_top1 is None:
            baseline_top1 = evaluate(bundle.model, val_loader)["top1"]
    state["baseline_top1"] = baseline_top1
    cur, cur_frac, plan = bundle, 0.0, None
    if state["accepted"]:
        last = state["accepted"][-1]
        cur = load_model(last["model"])
        cur_frac = float(last["fraction"])
        plan = Plan.from_dict(last["plan"], f"state {state_path}")
        if progress:
            ui.info(f"[prune] resuming after iteration {len(state['accepted'])} (fraction {cur_frac:.3f} of the goal)")
    queue = [f for f in schedule(iterations) if f > cur_frac + 1e-9]
    retries = 0
    # Once a step stays above --max-drop after max_retries smaller tries, later steps are not retried
    # (they would fail the same way); this bounds the run to len(schedule) + max_retries attempts.
    give_up = bool(state.get("gave_up", False))
    while queue:
        frac = queue[0]
        n = len(state["accepted"]) + 1
        new, step_plan = step_fn(cur, frac)
        top1 = None
        if finetune_epochs > 0:
            res = train_model(new, splits, finetune_epochs, checkpoint=wd / f"iter{n}-f{frac:.4f}.ckpt", resume=True,
                              progress=progress, label=f"finetune {n}", keep_best=True, **(train_kwargs or {}))
            top1 = res["top1"]
        elif val_loader is not None:
            top1 = evaluate(new.model, val_loader)["top1"]
        drop = (baseline_top1 - top1) if (top1 is not None and baseline_top1 is not None) else None
        rec = {"iteration": n, "fraction": frac, "flops": step_plan.flops_after, "top1": top1, "drop": drop}
        state["attempts"].append(rec)
        if max_drop is not None and drop is not None and drop > max_drop and retries < max_retries and not give_up:
            smaller = cur_frac + (frac - cur_frac) / 2
            if progress:
                ui.info(f"[prune] step to {frac:.3f} of the goal lost {drop:.2f} points (> --max-drop {max_drop}); "
                        f"retrying a smaller step to {smaller:.3f}")
            queue.insert(0, smaller)
            retries += 1
            write_json(state_path, state)
            continue
        if max_drop is not None and drop is not None and drop > max_drop:
            if progress and not give_up:
                ui.info(f"[prune] drop {drop:.2f} still > --max-drop {max_drop} after {max_retries} retries; "
                        "keeping it and finishing the schedule without further retries")
            give_up = True
            state["gave_up"] = True
        path = wd / f"iter{n}.pt"
        new.meta.update({"top1": top1, "plan": step_plan.to_dict()})
        save_model(new, path)
        state["accepted"].append({**rec, "model": str(path), "plan": step_plan.to_dict(),
                                  "within_max_drop": not (max_drop is not None and drop is not None and drop > max_drop)})
        write_json(state_path, state)
        for ck in wd.glob(f"iter{n}-f*.ckpt"):  # finetune checkpoints of this iteration are done
            ck.unlink()
        if progress:
            ui.info(f"[prune] iteration {n}: {frac:.3f} of the goal, FLOPs {step_plan.flops_after:,}, "
                    + (f"top-1 {top1:.2f}%" if top1 is not None else "no data"))
        cur, cur_frac, plan = new, frac, step_plan
        queue.pop(0)
        retries = 0
    if plan is None:
        raise UserError("nothing to do: the iterative run in this work directory already finished")
    final = [a for a in state["accepted"] if a["fraction"] >= 1.0 - 1e-9]
    best_path = None
    if final:
        best = max(final, key=lambda a: (a["top1"] if a["top1"] is not None else -1))
        best_path = wd / "best.pt"
        shutil.copyfile(best["model"], best_path)
    return IterativeResult(cur, plan, state["accepted"], best_path, baseline_top1,
                           state["accepted"][-1]["top1"] if state["accepted"] else None)
