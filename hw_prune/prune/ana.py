"""Sensitivity analysis (vai_p `ana`): top-1 after pruning one group at a time by each ratio.

Each cell prunes one group (its lowest-importance channels) by masking: the removed channels of
every member are zeroed, which is numerically what physical removal gives, without copying the
model. BN statistics are then re-estimated on a few training batches (adaptive BN, EagleEye) and
top-1 is measured on a fixed validation subset. Cells are written atomically to the workspace
(ana.json, ana.csv) after each one, so a killed run resumes and never recomputes finished cells.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from hw_prune import ui
from hw_prune.atomic import ensure_writable_dir, read_json, write_json, write_text
from hw_prune.errors import UserError
from hw_prune.graph import GraphInfo, analyse, removal_indices, snap_width

FORMAT = "hw_prune-ana/1"
DEFAULT_RATIOS = tuple(round(0.1 * i, 1) for i in range(1, 10))
ANA_JSON, ANA_CSV, ANA_PNG = "ana.json", "ana.csv", "ana.png"


def model_fingerprint(net: nn.Module) -> str:
    """Hash of the architecture and weights: a table is only reused for the same model."""
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        if v.dtype.is_floating_point:
            h.update(np.float64(v.double().sum().item()).tobytes())
    return h.hexdigest()[:16]


@dataclass
class SensitivityTable:
    baseline: float
    ratios: list[float]
    cells: dict[str, dict[str, float]]       # group -> {ratio str: top1}
    widths: dict[str, int]                   # full widths when analysed
    criterion: str
    meta: dict[str, Any]

    def drop(self, group: str, ratio: float) -> float:
        return self.baseline - self.cells[group][_rk(ratio)]

    def frame(self) -> pd.DataFrame:
        rows = []
        for g, c in self.cells.items():
            rows.append({"group": g, "width": self.widths.get(g, 0),
                         **{_rk(r): c.get(_rk(r), float("nan")) for r in self.ratios}})
        return pd.DataFrame(rows)

    @classmethod
    def load(cls, workspace: str | Path) -> "SensitivityTable":
        p = Path(workspace) / ANA_JSON
        d = read_json(p, "sensitivity table")
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise UserError(f"{p} is not a hw_prune sensitivity table; rerun hw_prune ana")
        missing = [g for g in d["groups"] if any(_rk(r) not in d["cells"].get(g, {}) for r in d["ratios"])]
        if missing:
            raise UserError(f"the sensitivity table in {workspace} is incomplete ({len(missing)} groups "
                            "unfinished); rerun hw_prune ana with the same arguments to finish it")
        return cls(float(d["baseline"]), [float(r) for r in d["ratios"]],
                   {g: {k: float(v["top1"]) for k, v in d["cells"][g].items()} for g in d["groups"]},
                   {g: int(w) for g, w in d["widths"].items()}, d["criterion"], d.get("meta", {}))


def _rk(r: float) -> str:
    return f"{float(r):.3g}"


@contextmanager
def channel_mask(net: nn.Module, info: GraphInfo, group: str, remove: Sequence[int]) -> Iterator[None]:
    """Zero `remove` channels of `group` at the output of every out-member (conv / linear / BN)."""
    dg = info.dg
    root = info.roots[group]
    pg = dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels, list(remove))
    hooks = []
    for item in pg:
        m = item.dep.target.module
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) or not dg.is_out_channel_pruning_fn(item.dep.handler):
            continue
        idx = torch.as_tensor(list(item.idxs), dtype=torch.long)

        def hook(_m: nn.Module, _i: Any, out: torch.Tensor, idx: torch.Tensor = idx) -> torch.Tensor:
            out = out.clone()
            out[:, idx] = 0
            return out
        hooks.append(m.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def adaptive_bn(net: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Re-estimate BN running statistics from a few batches (cumulative average, no gradient)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    for x, _ in batches:
        net(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    net.eval()


@torch.no_grad()
def _top1(net: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    net.eval()
    c = n = 0
    for x, y in batches:
        c += int((net(x).argmax(1) == y).sum())
        n += len(y)
    return 100.0 * c / max(1, n)


def _batches(ds: Any, n: int, bs: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[: min(n, len(ds))].tolist() if seed >= 0 else list(range(min(n, len(ds))))
    items = [ds[i] for i in idx]
    xs = torch.stack([x for x, _ in items])
    ys = torch.stack([torch.as_tensor(y) for _, y in items])
    return [(xs[i:i + bs], ys[i:i + bs]) for i in range(0, len(xs), bs)]


def run_ana(bundle: Any, splits: Any, workspace: str | Path, criterion: str = "l2",
            ratios: Sequence[float] = DEFAULT_RATIOS, exclude: Sequence[str] = (), val_images: int = 400,
            bn_batches: int = 2, batch_size: int = 64, restart: bool = False, progress: bool = True,
            max_cells: int | None = None) -> dict[str, Any]:
    """Fill (or finish) the workspace's sensitivity table. Returns {'workspace', 'table', 'json', 'png', ...}."""
    from hw_prune.prune.importance import group_importance

    ratios = sorted({round(float(r), 4) for r in ratios})
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise UserError(f"--ratios {' '.join(map(str, ratios))}: every ratio must be in (0, 1), e.g. 0.1 0.5 0.9")
    ws = ensure_writable_dir(workspace)
    net = bundle.model
    shape = tuple(bundle.input_shape)
    info = analyse(net, shape, exclude)
    groups = [g for g in info.groups if g.prunable]
    if not groups:
        raise UserError("the model has no prunable channel groups (all excluded?); drop some --exclude names")
    key = {"model": model_fingerprint(net), "input_shape": list(shape), "criterion": criterion,
           "data": splits.name, "val_images": min(val_images, len(splits.val)), "bn_batches": bn_batches,
           "batch_size": batch_size}
    jpath = ws / ANA_JSON
    state: dict[str, Any] | None = None
    if jpath.is_file() and not restart:
        try:
            old = json.loads(jpath.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if not isinstance(old, dict) or old.get("format") != FORMAT:
            raise UserError(f"{jpath} is not a hw_prune sensitivity table; use another --workspace or --restart")
        if old.get("key") != key:
            diff = [k for k in key if old.get("key", {}).get(k) != key[k]]
            raise UserError(f"workspace {ws} holds an analysis with different {', '.join(diff)}; use another "
                            "--workspace, or --restart to discard it")
        state = old
    val = _batches(splits.val, val_images, 256, seed=-1)
    calib = _batches(splits.train, bn_batches * batch_size, batch_size, seed=1)
    run_id = uuid.uuid4().hex[:8]
    if state is None:
        net.eval()
        state = {"format": FORMAT, "key": key, "baseline": _top1(net, val), "ratios": ratios,
                 "criterion": criterion, "groups": [g.name for g in groups],
                 "widths": {g.name: g.width for g in groups}, "cells": {g.name: {} for g in groups},
                 "meta": {"model_source": bundle.source, "metric": "top1", "created": time.strftime(
                     "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, "runs": []}
    else:
        for r in ratios:  # new ratios extend an existing table
            if r not in state["ratios"]:
                state["ratios"] = sorted(state["ratios"] + [r])
    state["runs"].append({"id": run_id, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    todo = [(g, r) for g in groups for r in state["ratios"] if _rk(r) not in state["cells"][g.name]]
    done_before = sum(len(c) for c in state["cells"].values())
    if progress:
        ui.info(f"[ana] {len(groups)} groups x {len(state['ratios'])} ratios; baseline top-1 "
                f"{state['baseline']:.2f}% on {len(val) and sum(len(y) for _, y in val)} val images; "
                f"{done_before} cells cached, {len(todo)} to compute")
    write_json(jpath, state)
    if todo:
        loader = [(x, y) for x, y in calib] if criterion == "taylor" else None
        scores = group_importance(net, shape, groups, criterion, loader=loader, info=info)
        bn_state = {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}
        t0 = time.time()
        for n_done, (g, r) in enumerate(ui.progress(todo, total=len(todo), desc="ana", disable=not progress)):
            if max_cells is not None and n_done >= max_cells:
                break
            keep = snap_width(g.width * (1 - r), g.width, g.divisor)
            remove = removal_indices(scores[g.name], keep, info.blocks.get(g.name, 1))
            with channel_mask(net, info, g.name, remove):
                adaptive_bn(net, calib)
                top1 = _top1(net, val)
            net.load_state_dict(bn_state, strict=False)
            state["cells"][g.name][_rk(r)] = {"top1": top1, "kept": keep, "run": run_id}
            write_json(jpath, state)  # after every cell: a killed run loses at most the cell in progress
        net.eval()
        if progress:
            ui.info(f"[ana] computed {min(len(todo), max_cells or len(todo))} cells in {time.time() - t0:.1f}s")
    table = SensitivityTable(state["baseline"], state["ratios"],
                             {g: {k: v["top1"] for k, v in c.items()} for g, c in state["cells"].items()},
                             state["widths"], criterion, state["meta"])
    df = table.frame()
    write_text(ws / ANA_CSV, df.to_csv(index=False, float_format="%.2f"))
    complete = all(len(c) == len(state["ratios"]) for c in state["cells"].values())
    png = _plot(table, ws / ANA_PNG) if complete else None
    if progress:
        ui.table(df, title=f"top-1 (%) after pruning each group by ratio (baseline {table.baseline:.2f}%)",
                 floatfmt="{:.1f}")
    return {"workspace": str(ws), "table": str(ws / ANA_CSV), "json": str(jpath), "png": str(png) if png else None,
            "baseline_top1": table.baseline, "groups": len(groups), "ratios": state["ratios"], "complete": complete,
            "cells_cached": done_before, "cells_computed": sum(len(c) for c in state["cells"].values()) - done_before}


def _plot(table: SensitivityTable, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hw_prune.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(8, 5))
    for g, c in table.cells.items():
        ax.plot([0] + table.ratios, [table.baseline] + [c.get(_rk(r), np.nan) for r in table.ratios],
                marker=".", label=g, linewidth=1)
    ax.set_xlabel("channel pruning ratio of the group")
    ax.set_ylabel("top-1 after adaptive BN (%)")
    ax.set_title("sensitivity per channel group")
    if len(table.cells) <= 30:
        ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
