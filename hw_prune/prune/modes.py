"""How `prune` chooses per-group widths: uniform, threshold, FLOPs ratio (sensitivity or importance).

--ratio R with a sensitivity table (vai_p's method): a global accuracy-drop threshold T gives every
group the largest ratio whose (interpolated, monotone) drop is <= T; T is bisected until the FLOPs
are within 1% of (1 - R) x baseline, then corrected channel step by channel step (refine_to_goal).
--ratio R without a table (documented fallback): channels are ranked globally by importance
normalised by their group's mean importance (Torch-Pruning's global ranking), at most 90% of a
group is removed, and the cut-off is bisected to the same FLOPs goal.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from hw_prune.errors import UserError
from hw_prune.graph import ChannelGroup, snap_width
from hw_prune.prune.flopmodel import FlopModel

MAX_GROUP_RATIO = 0.9  # never remove more than this share of a group's channels in ratio modes


def check_ratio(r: float, flag: str) -> float:
    if r is None or not 0 < r < 1:
        raise UserError(f"{flag} {r} is outside (0, 1); pass a fraction such as 0.5")
    return float(r)


def uniform_widths(groups: list[ChannelGroup], ratio: float, channel_divisible: int = 1) -> dict[str, int]:
    """The same channel ratio for every prunable group (LogicTronix / vai_p one-step style)."""
    return {g.name: snap_width(g.width * (1 - ratio), g.width, g.divisor, channel_divisible)
            for g in groups if g.prunable}


def _interp_ratio(ratios: list[float], drops: list[float], t: float, max_ratio: float) -> float:
    """Largest ratio r with interpolated monotone drop(r) <= t (drop(0) = 0)."""
    xs = [0.0] + list(ratios)
    ys = np.maximum.accumulate(np.maximum(0.0, [0.0] + list(drops)))
    best = 0.0
    for i in range(1, len(xs)):
        if ys[i] <= t:
            best = xs[i]
            continue
        # crossing between xs[i-1] and xs[i]
        if ys[i] > ys[i - 1]:
            best = xs[i - 1] + (xs[i] - xs[i - 1]) * (t - ys[i - 1]) / (ys[i] - ys[i - 1])
        break
    return min(best, max_ratio)


def threshold_widths(groups: list[ChannelGroup], table: "object", threshold: float,
                     channel_divisible: int = 1, max_ratio: float = MAX_GROUP_RATIO) -> dict[str, int]:
    """Per-group widths where each group's accuracy drop stays <= threshold (top-1 points)."""
    out = {}
    for g in groups:
        if not g.prunable or g.name not in table.cells:
            continue
        width0 = table.widths.get(g.name, g.width)
        drops = [table.drop(g.name, r) for r in table.ratios]
        r = _interp_ratio(table.ratios, drops, threshold, max_ratio)
        out[g.name] = min(g.width, snap_width(width0 * (1 - r), width0, g.divisor, channel_divisible))
    return out


def bisect_to_flops(widths_for: Callable[[float], dict[str, int]], fm: FlopModel, goal_flops: float,
                    lo: float, hi: float, iters: int = 60) -> tuple[dict[str, int], int]:
    """Find the parameter in [lo, hi] (more pruning as it grows) whose widths give FLOPs closest to the goal."""
    best_w, best_f = widths_for(lo), fm.flops(widths_for(lo))
    w_hi = widths_for(hi)
    f_hi = fm.flops(w_hi)
    if f_hi > goal_flops * 1.01:
        raise UserError(f"cannot remove that much: the most this mode can reach is {1 - f_hi / fm.total:.1%} of "
                        f"the FLOPs (each group keeps >= {1 - MAX_GROUP_RATIO:.0%}); ask for a smaller --ratio")
    for _ in range(iters):
        mid = (lo + hi) / 2
        w = widths_for(mid)
        f = fm.flops(w)
        if abs(f - goal_flops) < abs(best_f - goal_flops):
            best_w, best_f = w, f
        if abs(f - goal_flops) <= 0.002 * fm.total:
            break
        if f > goal_flops:
            lo = mid
        else:
            hi = mid
    if abs(f_hi - goal_flops) < abs(best_f - goal_flops):
        best_w, best_f = w_hi, f_hi
    return best_w, best_f


def _drop_at(table: "object", group: str, ratio: float) -> float:
    """Interpolated monotone accuracy drop of a group at a channel ratio (0 at ratio 0)."""
    xs = [0.0] + list(table.ratios)
    ys = np.maximum.accumulate(np.maximum(0.0, [0.0] + [table.drop(group, r) for r in table.ratios]))
    return float(np.interp(ratio, xs, ys))


def refine_to_goal(widths: dict[str, int], groups: list[ChannelGroup], fm: FlopModel, goal: float,
                   cost: Callable[[ChannelGroup, int], float], channel_divisible: int = 1,
                   tol: float = 0.004, max_ratio: float = MAX_GROUP_RATIO) -> tuple[dict[str, int], int]:
    """One-step-at-a-time correction after the bisection (a single channel of a wide residual stream can be
    ~2% of the FLOPs, so the threshold alone may miss the goal): while FLOPs are above goal x (1 + tol),
    remove a step from the group whose cost(group, new width) is lowest; while below goal x (1 - 2 tol),
    give a step back to the group that gains most, if that does not overshoot."""
    import math

    w = dict(widths)
    by = {g.name: g for g in groups if g.prunable and g.name in w}
    step = {n: math.lcm(g.divisor, channel_divisible) for n, g in by.items()}
    f = fm.flops(w)
    for _ in range(1000):
        if f <= goal * (1 + tol):
            break
        cands = [(cost(g, w[n] - step[n]), n) for n, g in by.items()
                 if w[n] - step[n] >= max(step[n], math.ceil(g.width * (1 - max_ratio)))]
        if not cands:
            break
        _, n = min(cands)
        w[n] -= step[n]
        f = fm.flops(w)
    for _ in range(1000):
        if f >= goal * (1 - 2 * tol):
            break
        cands = []
        for n, g in by.items():
            if w[n] + step[n] <= g.width:
                trial = {**w, n: w[n] + step[n]}
                ft = fm.flops(trial)
                if ft <= goal * (1 + tol):
                    cands.append((cost(g, w[n]) - cost(g, w[n] + step[n]), n, ft))
        if not cands:
            break
        _, n, f = max(cands)
        w[n] += step[n]
    return w, f


def ratio_widths_from_table(groups: list[ChannelGroup], table: "object", fm: FlopModel, ratio: float,
                            channel_divisible: int = 1) -> tuple[dict[str, int], int]:
    goal = fm.total * (1 - ratio)
    top = max([table.baseline] + [table.baseline - v for c in table.cells.values() for v in c.values()]) + 1
    w, _ = bisect_to_flops(lambda t: threshold_widths(groups, table, t, channel_divisible), fm, goal, 0.0, top)

    def cost(g: ChannelGroup, width: int) -> float:
        w0 = table.widths.get(g.name, g.width)
        return _drop_at(table, g.name, 1 - width / w0) if g.name in table.cells else 0.0

    return refine_to_goal(w, groups, fm, goal, cost, channel_divisible)


def ratio_widths_from_importance(groups: list[ChannelGroup], scores: dict[str, np.ndarray], fm: FlopModel,
                                 ratio: float, channel_divisible: int = 1) -> tuple[dict[str, int], int]:
    """Global ranking of channels by group-normalised importance, cut-off bisected to the FLOPs goal."""
    norm = {}
    for g in groups:
        if g.prunable and g.name in scores:
            s = np.asarray(scores[g.name], dtype=np.float64)
            norm[g.name] = np.sort(s / (s.mean() + 1e-12))
    pr = [g for g in groups if g.name in norm]

    def widths_for(t: float) -> dict[str, int]:
        out = {}
        for g in pr:
            removed = int(np.searchsorted(norm[g.name], t))
            removed = min(removed, int(MAX_GROUP_RATIO * g.width))
            out[g.name] = snap_width(g.width - removed, g.width, g.divisor, channel_divisible)
        return out

    hi = max(float(v.max()) for v in norm.values()) + 1
    goal = fm.total * (1 - ratio)
    w, _ = bisect_to_flops(widths_for, fm, goal, 0.0, hi)

    def cost(g: ChannelGroup, width: int) -> float:  # importance removed, normalised per group
        return float(norm[g.name][: max(0, g.width - width)].sum()) if g.name in norm else 0.0

    return refine_to_goal(w, groups, fm, goal, cost, channel_divisible)
