"""Latency-budgeted width allocation: choose a kept width for every channel group so that the predicted
latency fits a budget while as much importance (or as little predicted accuracy) as possible is lost.

How it works (HALP-like, but greedy instead of a knapsack; see docs/benchmarks/latency_prune.md):
- `layer_dependencies` says, for every LayerSpec, which channel groups set its input and output channel
  counts (a group's width is the cout of its producers and the cin of its consumers; a concatenation
  sums several groups; residual adds share one group). Found by propagating channel "origins" through
  the torch.fx graph, so functional adds / cats / pools are costed too.
- `WidthSearch` walks down from the full widths: at every step it takes the move (one group, down by one
  or a few allowed widths) that loses the least importance per millisecond saved. The latency change of a
  move is exact under the cost model: every layer that touches the group is re-predicted with its
  neighbours' current widths (predictions are cached by LayerSpec.key()). Lookahead over several widths
  copes with staircases, where one step saves nothing and two save a whole tile. A fill-back pass then
  re-grows the groups with the best importance per ms while the budget still holds, which lands the
  latency close to the budget (the closed loop needs that: it aims at a 5% window).
- Allowed widths are multiples of lcm(cost-model alignment, group divisor) (the full width always
  stays allowed): on a DPU 17 channels cost as much as 32, so the search never pays for them.
"""

from __future__ import annotations

import math
import operator
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from hw_prune.layers import LayerSpec, extract_layer_specs

Terms = tuple[tuple[str | None, int], ...]  # (group name or None = fixed, channel count at full width)


@dataclass
class LayerDeps:
    """A layer and the groups its channel counts come from."""

    spec: LayerSpec
    cin: Terms
    cout: Terms

    def groups(self) -> set[str]:
        return {g for g, _ in self.cin + self.cout if g is not None}


# ----------------------------------------------------------------------------------------------
# which groups set which layer's channels


def _member_maps(groups: Iterable[Any]) -> tuple[dict[str, str], dict[str, str]]:
    out_of: dict[str, str] = {}
    in_of: dict[str, str] = {}
    for g in groups:
        for mod, kind in g.members:
            (out_of if kind == "out" else in_of).setdefault(mod, g.name)
    return out_of, in_of


def _scale(terms: Terms, total: int) -> Terms:
    """Terms rescaled to `total` channels (e.g. a Linear after flattening C x H x W)."""
    s = sum(c for _, c in terms)
    if s == total or s == 0:
        return terms if s else ((None, total),)
    if total % s == 0:
        k = total // s
        return tuple((g, c * k) for g, c in terms)
    return ((None, total),)


_CAT = (torch.cat, torch.concat)
_ADD = (operator.add, torch.add, operator.iadd)


def _deps_fx(model: nn.Module, input_shape: tuple[int, ...], specs: Sequence[LayerSpec],
             out_of: dict[str, str]) -> list[LayerDeps]:
    from torch.fx import symbolic_trace

    gm = symbolic_trace(model)
    modules = dict(gm.named_modules())
    origin: dict[Any, Terms] = {}
    by_name: dict[str, list[tuple[Terms, Terms]]] = {}

    def arg_terms(a: Any) -> Terms | None:
        return origin.get(a) if hasattr(a, "op") else None

    def first_terms(node: Any) -> Terms | None:
        for a in list(node.args) + list(node.kwargs.values()):
            t = arg_terms(a)
            if t is not None:
                return t
        return None

    for node in gm.graph.nodes:
        t: Terms | None = None
        if node.op == "placeholder":
            t = ((None, int(input_shape[1])),)
        elif node.op == "call_module":
            m = modules[node.target]
            tin = first_terms(node)
            if isinstance(m, nn.Conv2d):
                t = ((out_of.get(node.target), m.out_channels),)
                by_name.setdefault(node.target, []).append((_scale(tin or ((None, m.in_channels),),
                                                                   m.in_channels), t))
            elif isinstance(m, nn.Linear):
                t = ((out_of.get(node.target), m.out_features),)
                by_name.setdefault(node.target, []).append((_scale(tin or ((None, m.in_features),),
                                                                   m.in_features), t))
            else:
                t = tin
                if tin is not None:
                    by_name.setdefault(node.target, []).append((tin, tin))
        elif node.op in ("call_function", "call_method"):
            fn = node.target
            if fn in _CAT:
                dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
                parts = [arg_terms(a) for a in node.args[0]]
                if dim in (1, -3) and all(p is not None for p in parts):
                    t = tuple(x for p in parts for x in p)  # type: ignore[union-attr]
                else:
                    t = parts[0] if parts else None
            elif fn in _ADD or fn in ("add", "add_"):
                cands = [arg_terms(a) for a in node.args if arg_terms(a) is not None]
                # both operands carry the same (coupled) channels; prefer the one naming a group
                t = next((c for c in cands if any(g for g, _ in c)), cands[0] if cands else None)
            else:
                t = first_terms(node)
            if t is not None:
                by_name.setdefault(node.name, []).append((t, t))
        if t is not None:
            origin[node] = t

    deps: list[LayerDeps] = []
    used: dict[str, int] = {}
    for s in specs:
        lst = by_name.get(s.name)
        i = used.get(s.name, 0)
        if not lst or i >= len(lst):
            deps.append(LayerDeps(s, ((None, s.cin),), ((None, s.cout),)))
            continue
        used[s.name] = i + 1
        tin, tout = lst[i]
        if s.op in ("pool", "add", "concat"):
            tin = tout
        deps.append(LayerDeps(s, _scale(tin, s.cin), _scale(tout, s.cout)))
    return deps


def _deps_members(specs: Sequence[LayerSpec], out_of: dict[str, str], in_of: dict[str, str]) -> list[LayerDeps]:
    """Fallback for models fx cannot trace: convs/linears by membership, pools follow the previous layer."""
    deps: list[LayerDeps] = []
    prev: Terms = ((None, 0),)
    for s in specs:
        if s.op in ("conv", "dwconv", "fc"):
            d = LayerDeps(s, ((in_of.get(s.name), s.cin),), ((out_of.get(s.name), s.cout),))
        else:
            t = prev if sum(c for _, c in prev) == s.cin else ((None, s.cin),)
            d = LayerDeps(s, t, t)
        deps.append(d)
        prev = d.cout
    return deps


def layer_dependencies(model: nn.Module, input_shape: tuple[int, ...], groups: Sequence[Any],
                       specs: Sequence[LayerSpec] | None = None) -> list[LayerDeps]:
    """For each layer spec (execution order): the groups that set its cin and cout.

    `groups` are hw_prune.graph.ChannelGroup-like (name, width, members[(module, 'out'|'in')], ...).
    """
    specs = list(specs) if specs is not None else extract_layer_specs(model, input_shape)
    out_of, in_of = _member_maps(groups)
    was = model.training
    model.eval()
    try:
        return _deps_fx(model, input_shape, specs, out_of)
    except Exception:  # untraceable model: membership only
        return _deps_members(specs, out_of, in_of)
    finally:
        model.train(was)


def _width_of(terms: Terms, widths: Mapping[str, int], full: Mapping[str, int]) -> int:
    n = 0
    for g, c in terms:
        if g is None or g not in widths:
            n += c
        else:
            n += c * widths[g] // full[g]
    return n


def _spec_with(s: LayerSpec, ci: int, co: int) -> LayerSpec:
    if ci == s.cin and co == s.cout:
        return s
    if s.op in ("pool", "add", "concat"):
        return s.with_channels(cin=co, cout=co)
    if s.op == "dwconv":
        return s.with_channels(cout=co)
    return s.with_channels(cin=ci, cout=co)


def specs_at(deps: Sequence[LayerDeps], widths: Mapping[str, int], full: Mapping[str, int]) -> list[LayerSpec]:
    """Layer specs of the model pruned to `widths` (groups not named keep their full width)."""
    return [_spec_with(d.spec, _width_of(d.cin, widths, full), _width_of(d.cout, widths, full)) for d in deps]


# ----------------------------------------------------------------------------------------------
# objective: what is lost when a group keeps k channels


FLOOR_PENALTY = 1e4  # loss added below a soft floor: such cuts come after every other cut


def importance_loss_curves(groups: Sequence[Any], importance: Mapping[str, np.ndarray],
                           weights: Mapping[str, float] | None = None,
                           soft_floor: float = 0.0) -> dict[str, np.ndarray]:
    """loss[g][k] = -log(share of group g's importance mass kept when its best k channels are kept),
    times the group's weight (default: its number of producing layers, so a residual stream that
    feeds many blocks counts for each of them; build_search passes the group's share of the MACs)."""
    curves: dict[str, np.ndarray] = {}
    for g in groups:
        sc = np.asarray(importance.get(g.name, np.ones(g.width)), dtype=float).reshape(-1)
        if sc.size != g.width:
            sc = np.ones(g.width)
        sc = np.sort(np.abs(sc))[::-1]
        tot = sc.sum()
        kept = np.concatenate([[0.0], np.cumsum(sc)]) / (tot if tot > 0 else 1.0)
        if tot <= 0:
            kept = np.arange(g.width + 1) / g.width
        w = (weights or {}).get(g.name)
        if w is None:
            w = max(1, sum(1 for _, kind in g.members if kind == "out"))
        # -log(kept share): halving a group costs w*ln2, emptying it costs without bound. A linear loss
        # (1 - kept) let the search collapse whole stages to 2 channels, which finetuning cannot repair
        # (docs/benchmarks/latency_prune.md); the log keeps every group alive, as uniform pruning does.
        curve = float(w) * -np.log(np.maximum(kept, 1e-6))
        # a soft floor at soft_floor x width: cutting a group below it costs more than any cut above it, so the
        # search goes there only when nothing else reaches the budget (the reachable range stays the same)
        floor = math.ceil(soft_floor * g.width)
        if floor > 1:
            k = np.arange(g.width + 1)
            curve = curve + np.where(k < floor, FLOOR_PENALTY * (1 + (floor - k) / floor), 0.0)
        curves[g.name] = curve
    return curves


def sensitivity_loss_curves(groups: Sequence[Any], table: Mapping[str, Mapping[float, float]],
                            baseline: float, fallback: Mapping[str, np.ndarray] | None = None
                            ) -> dict[str, np.ndarray]:
    """loss[g][k] = predicted accuracy drop (points, >= 0) from an `ana` table {group: {ratio: metric}}
    (ratio = share of channels removed), interpolated linearly; beyond the largest measured ratio the
    drop grows linearly to `baseline` (chance) at ratio 1. Groups missing from the table use `fallback`."""
    curves: dict[str, np.ndarray] = {}
    for g in groups:
        row = table.get(g.name)
        if not row:
            if fallback is not None and g.name in fallback:
                curves[g.name] = fallback[g.name]
            continue
        rs = sorted(float(r) for r in row)
        drops = [max(0.0, baseline - float(row[r] if r in row else row[str(r)])) for r in rs]  # type: ignore[index]
        xs, ys = [0.0] + rs, [0.0] + drops
        if xs[-1] < 1.0:
            xs.append(1.0)
            ys.append(max(ys[-1], baseline))
        ys = list(np.maximum.accumulate(ys))  # removing more never helps
        ratios = 1.0 - np.arange(g.width + 1) / g.width
        curves[g.name] = np.interp(ratios, xs, ys)
    return curves


# ----------------------------------------------------------------------------------------------
# the search


@dataclass
class SearchResult:
    widths: dict[str, int]
    latency_ms: float          # predicted by cost_model.predict_model
    fps: float
    per_layer_ms: list[float]
    specs: list[LayerSpec]
    loss: float                # objective lost (importance share x weight, or predicted points)
    feasible: bool
    seconds: float
    evaluations: int           # predict_layer calls that missed the cache
    steps: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


class WidthSearch:
    """Greedy width allocation under a latency budget (see module docstring).

    cost_model: anything with predict_layer(spec) -> ms and predict_model(specs) -> ModelPrediction.
    loss_curves: {group: array of length width+1}, loss when k channels are kept (non-increasing in k).
    """

    def __init__(self, deps: Sequence[LayerDeps], groups: Sequence[Any], cost_model: Any,
                 loss_curves: Mapping[str, np.ndarray], alignment: int | None = None,
                 min_width: Mapping[str, int] | int | None = None, lookahead: int = 4) -> None:
        self.deps = list(deps)
        self.cost = cost_model
        self.full = {g.name: int(g.width) for g in groups}
        self.prunable = [g.name for g in groups if getattr(g, "prunable", True) and g.name in loss_curves]
        self.curves = {k: np.asarray(v, dtype=float) for k, v in loss_curves.items()}
        align = int(alignment if alignment is not None else getattr(cost_model, "alignment", 1) or 1)
        self.alignment = max(1, align)
        self.lookahead = max(1, lookahead)
        self.options: dict[str, list[int]] = {}
        for g in groups:
            if g.name not in self.prunable:
                continue
            div = max(1, int(getattr(g, "divisor", 1) or 1))
            lo = min_width.get(g.name, 1) if isinstance(min_width, Mapping) else int(min_width or 1)
            self.options[g.name] = allowed_widths(int(g.width), div, self.alignment, lo)
        self.prunable = [n for n in self.prunable if len(self.options[n]) > 1]
        self._layers_of: dict[str, list[int]] = {n: [] for n in self.full}
        for i, d in enumerate(self.deps):
            for gname in d.groups():
                if gname in self._layers_of:
                    self._layers_of[gname].append(i)
        self._cache: dict[tuple, float] = {}
        self._fast: dict[tuple, float] = {}
        self.evaluations = 0
        self._ab: tuple[float, float] | None = None
        self.prefetch()

    # -- costs --------------------------------------------------------------------------------
    def _layer_ms(self, spec: LayerSpec) -> float:
        k = spec.key()
        v = self._cache.get(k)
        if v is None:
            v = float(self.cost.predict_layer(spec))
            self._cache[k] = v
            self.evaluations += 1
        return v

    def _ms(self, i: int, widths: Mapping[str, int]) -> float:
        """Latency of layer i at `widths`, cached by (layer, cin, cout) in front of the LayerSpec.key() cache."""
        d = self.deps[i]
        k = (i, _width_of(d.cin, widths, self.full), _width_of(d.cout, widths, self.full))
        v = self._fast.get(k)
        if v is None:
            v = self._layer_ms(_spec_with(d.spec, k[1], k[2]))
            self._fast[k] = v
        return v

    def prefetch(self, max_per_layer: int = 8192) -> int:
        """Predict every (layer, allowed cin, allowed cout) in one batched call when the cost model has
        `predict_layers` (the fitted models build a DataFrame per call, so one call per layer is slow)."""
        batch = getattr(self.cost, "predict_layers", None)
        if batch is None:
            return 0
        import itertools

        specs: list[LayerSpec] = []
        keys: list[tuple] = []
        for i, d in enumerate(self.deps):
            gs = sorted(d.groups() & set(self.prunable))
            n = 1
            for g in gs:
                n *= len(self.options[g])
            if not gs or n > max_per_layer:
                continue
            for combo in itertools.product(*[self.options[g] for g in gs]):
                w = dict(self.full)
                w.update(zip(gs, combo))
                k = (i, _width_of(d.cin, w, self.full), _width_of(d.cout, w, self.full))
                if k not in self._fast:
                    self._fast[k] = -1.0  # placeholder, filled below
                    keys.append(k)
                    specs.append(_spec_with(d.spec, k[1], k[2]))
        if not specs:
            return 0
        vals = np.asarray(batch(specs), dtype=float)
        for k, s, v in zip(keys, specs, vals):
            self._fast[k] = float(v)
            self._cache[s.key()] = float(v)
        self.evaluations += len(specs)
        return len(specs)

    def _delta(self, widths: dict[str, int], g: str, new: int) -> float:
        """Change of the summed layer latency when group g goes to `new` (others fixed)."""
        old_w = widths[g]
        idx = self._layers_of[g]
        before = sum(self._ms(i, widths) for i in idx)
        widths[g] = new
        after = sum(self._ms(i, widths) for i in idx)
        widths[g] = old_w
        return after - before

    def layer_sum(self, widths: Mapping[str, int]) -> float:
        return sum(self._ms(i, widths) for i in range(len(self.deps)))

    def predict(self, widths: Mapping[str, int]) -> Any:
        return self.cost.predict_model(specs_at(self.deps, widths, self.full))

    def loss(self, widths: Mapping[str, int]) -> float:
        return float(sum(self.curves[g][widths[g]] for g in self.prunable))

    def min_widths(self) -> dict[str, int]:
        w = dict(self.full)
        for g in self.prunable:
            w[g] = self.options[g][0]
        return w

    def fastest(self) -> tuple[dict[str, int], Any]:
        """Every prunable group at its smallest allowed width: the most speed the structure allows."""
        w = self.min_widths()
        return w, self.predict(w)

    # -- search -------------------------------------------------------------------------------
    def _best_down(self, widths: dict[str, int], g: str) -> tuple[float, int, float] | None:
        opts = self.options[g]
        j = opts.index(widths[g]) if widths[g] in opts else len(opts)
        best = None
        cur_loss = self.curves[g][widths[g]]
        for new in reversed(opts[max(0, j - self.lookahead):j]):
            saved = -self._delta(widths, g, new)
            if saved <= 1e-9:
                continue
            score = (self.curves[g][new] - cur_loss) / saved
            if best is None or score < best[0]:
                best = (score, new, saved)
        return best

    def _best_up(self, widths: dict[str, int], g: str, slack: float) -> tuple[float, int, float] | None:
        opts = self.options[g]
        if widths[g] not in opts:
            return None
        j = opts.index(widths[g])
        cur_loss = self.curves[g][widths[g]]
        best = None
        for new in opts[j + 1:j + 1 + self.lookahead]:
            cost = self._delta(widths, g, new)
            if cost > slack + 1e-12:
                continue
            gain = cur_loss - self.curves[g][new]
            if gain <= 0:
                continue
            score = gain / max(cost, 1e-9)
            if best is None or score > best[0]:
                best = (score, new, cost)
        return best

    def _descend(self, widths: dict[str, int], limit: float, frozen: str | None = None) -> int:
        """Greedy cuts until the summed layer latency is <= limit. Returns the number of moves."""
        total = self.layer_sum(widths)
        groups = [g for g in self.prunable if g != frozen]
        cand = {g: self._best_down(widths, g) for g in groups} if total > limit else {}
        steps = 0
        while total > limit:
            live = [(v[0], g) for g, v in cand.items() if v is not None]
            if not live:
                break
            _, g = min(live)
            _, new, saved = cand[g]  # type: ignore[misc]
            widths[g] = new
            total -= saved
            steps += 1
            for n in self._neighbours(g):
                if n != frozen:
                    cand[n] = self._best_down(widths, n)
        return steps

    def _fill(self, widths: dict[str, int], limit: float) -> int:
        """Re-grow the most valuable groups while the summed layer latency stays <= limit."""
        total = self.layer_sum(widths)
        steps = 0
        while total < limit:
            ups = [(v[0], g, v) for g in self.prunable if (v := self._best_up(widths, g, limit - total)) is not None]
            if not ups:
                break
            _, g, (_, new, cost) = max(ups, key=lambda x: x[0])
            widths[g] = new
            total += cost
            steps += 1
        return steps

    def _polish(self, widths: dict[str, int], limit: float, deadline: float) -> int:
        """Local improvement: grow one group by an allowed step, re-cut the others greedily, re-fill;
        keep the change when the loss drops. Fixes the greedy's coarse-step mistakes (see tests)."""
        moves = 0
        improved = True
        while improved and time.perf_counter() < deadline:
            improved = False
            base = self.loss(widths)
            for g in self.prunable:
                opts = self.options[g]
                j = opts.index(widths[g])
                for new in opts[j + 1:j + 1 + self.lookahead]:
                    w2 = dict(widths)
                    w2[g] = new
                    self._descend(w2, limit, frozen=g)
                    if self.layer_sum(w2) > limit + 1e-12:
                        continue
                    self._fill(w2, limit)
                    if self.loss(w2) < base - 1e-9:
                        widths.clear()
                        widths.update(w2)
                        moves += 1
                        improved = True
                        break
                    if time.perf_counter() > deadline:
                        break
                if improved or time.perf_counter() > deadline:
                    break
        return moves

    def run(self, budget_ms: float, start: Mapping[str, int] | None = None,
            polish_seconds: float = 2.0) -> SearchResult:
        """Widths whose predicted latency (predict_model) is <= budget_ms, losing as little as possible.
        Infeasible budgets return the fastest model with feasible=False."""
        t0 = time.perf_counter()
        ev0 = self.evaluations
        widths = dict(self.full)
        if start:
            widths.update({k: v for k, v in start.items() if k in widths})
        # sequential targets: model latency = sum of layers + a per-frame constant; the constant is
        # re-estimated from predict_model so non-additive (dataflow) targets still converge below.
        steps = 0
        polished = 0
        a, b = self._affine()
        target = budget_ms
        for _round in range(6):
            limit = (target - a) / b
            steps += self._descend(widths, limit)
            steps += self._fill(widths, limit)
            if self.layer_sum(widths) <= limit + 1e-12:
                polished += self._polish(widths, limit, time.perf_counter() + polish_seconds)
            pred = self.predict(widths)
            if float(pred.latency_ms) <= budget_ms * (1 + 1e-9) or not any(
                    self._best_down(widths, g) for g in self.prunable):
                break
            target -= float(pred.latency_ms) - budget_ms  # non-additive target: tighten and go on
        specs = specs_at(self.deps, widths, self.full)
        pred = self.cost.predict_model(specs)
        feasible = float(pred.latency_ms) <= budget_ms * (1 + 1e-9) and bool(getattr(pred, "fits", True))
        return SearchResult(dict(widths), float(pred.latency_ms), float(pred.fps), list(pred.per_layer_ms), specs,
                            self.loss(widths), feasible, time.perf_counter() - t0, self.evaluations - ev0, steps,
                            {"polish_moves": polished})

    def _affine(self) -> tuple[float, float]:
        """Model latency ~ a + b * (sum of layer latencies), from predict_model at the full and the
        smallest widths (exact for sequential targets: per-frame cost + scale; dataflow targets are
        corrected by the outer rounds of `run`)."""
        if self._ab is None:
            w0, w1 = self.full, self.min_widths()
            s0, s1 = self.layer_sum(w0), self.layer_sum(w1)
            p0, p1 = float(self.predict(w0).latency_ms), float(self.predict(w1).latency_ms)
            b = (p0 - p1) / (s0 - s1) if s0 - s1 > 1e-12 else 1.0
            if not (b > 1e-6 and math.isfinite(b)):
                b = 1.0
            self._ab = (p0 - b * s0, b)
        return self._ab

    def set_cost(self, cost_model: Any) -> None:
        """Swap in a re-calibrated cost model (the closed loop) and drop cached predictions."""
        self.cost = cost_model
        self._cache.clear()
        self._fast.clear()
        self._ab = None
        self.prefetch()

    def _neighbours(self, g: str) -> set[str]:
        """Groups whose move costs change when g changes (they share a layer with g)."""
        out = {g}
        for i in self._layers_of[g]:
            out |= self.deps[i].groups()
        return {n for n in out if n in self.options and n in self.prunable}


def allowed_widths(width: int, divisor: int = 1, alignment: int = 1, min_width: int = 1,
                   max_options: int | None = 64) -> list[int]:
    """Widths a group may keep, ascending: multiples of lcm(alignment, divisor) below `width`, plus
    `width` itself. Groups no wider than one aligned step may still shrink, to the step's halvings (8, 4, 2, 1
    at alignment 16; else multiples of the divisor): the DPU charges them a whole tile anyway, and a CPU's
    fast path wants power-of-two blocks (host-cpu: a 16-wide group cut to 6 or 7 ran no faster than at 8).
    Where the hardware rewards no alignment (alignment 1) the step grows so that a group has at most
    `max_options` widths: one channel more or less is below what a latency measurement resolves, and it keeps
    the search fast."""
    step = divisor * alignment // math.gcd(divisor, alignment)
    if alignment == 1 and max_options and width > step * max_options:
        step *= math.ceil(width / (step * max_options))
    opts = [k for k in range(step, width, step) if k >= min_width]
    if not opts:  # narrower than one step: the step's halvings that are multiples of the divisor
        half = step // 2
        while half >= 1:
            if half < width and half % divisor == 0 and half >= min_width:
                opts.insert(0, half)
            half //= 2
        if not opts:
            opts = [k for k in range(divisor, width, divisor) if k >= min_width]
    return opts + [width]


def compute_weights(deps: Sequence[LayerDeps], groups: Sequence[Any], uniform_share: float = 0.0
                    ) -> dict[str, float]:
    """Each group's share of the model's MACs (every conv/fc whose cin or cout it sets counts), blended with
    an equal share per group: (1 - uniform_share) * MAC share + uniform_share / n. Used as the weight of its
    importance curve: at equal latency the search then keeps the most (important) compute, while the equal
    part keeps cheap-in-MACs but latency-heavy groups (high-resolution stems on a CPU) from being gutted."""
    macs = {g.name: 0.0 for g in groups}
    for d in deps:
        for g in d.groups():
            if g in macs:
                macs[g] += float(d.spec.macs)
    total = sum(macs.values()) or 1.0
    floor = 1e-3 * total / max(1, len(macs))  # groups seen only by pools/adds still cost something to cut
    n = max(1, len(macs))
    return {g: (1 - uniform_share) * max(v, floor) / total + uniform_share / n for g, v in macs.items()}


def build_search(model: nn.Module, input_shape: tuple[int, ...], groups: Sequence[Any], cost_model: Any,
                 importance: Mapping[str, np.ndarray] | None = None,
                 sensitivity: tuple[Mapping[str, Mapping[float, float]], float] | None = None,
                 alignment: int | None = None, lookahead: int = 4,
                 min_width: Mapping[str, int] | int | None = None, weighting: str = "macs",
                 uniform_share: float = 0.0, soft_floor: float = 0.0) -> WidthSearch:
    """Convenience: dependencies + loss curves (ana table when given, importance otherwise).
    weighting: 'macs' (group's share of the compute, blended with `uniform_share`, see compute_weights) or
    'producers' (number of layers it is output of); soft_floor: see importance_loss_curves."""
    deps = layer_dependencies(model, input_shape, groups)
    weights = compute_weights(deps, groups, uniform_share) if weighting == "macs" else None
    curves = importance_loss_curves(groups, importance or {}, weights, soft_floor)
    if sensitivity is not None:
        table, base = sensitivity
        curves = {**curves, **sensitivity_loss_curves(groups, table, base, fallback=curves)}
    return WidthSearch(deps, groups, cost_model, curves, alignment=alignment, lookahead=lookahead,
                       min_width=min_width)


def uniform_widths(groups: Sequence[Any], keep: float, divisor_round: int = 1) -> dict[str, int]:
    """Same kept share for every prunable group (used for baselines and the first guess)."""
    out = {}
    for g in groups:
        if not getattr(g, "prunable", True):
            continue
        step = max(1, int(getattr(g, "divisor", 1) or 1), divisor_round)
        out[g.name] = int(min(g.width, max(step, round(g.width * keep / step) * step)))
    return out

