"""Turn chosen widths into a pruned (dense) model plus its Plan."""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np

from hw_prune.flops import count_flops
from hw_prune.graph import GraphInfo, analyse, apply_widths
from hw_prune.models.io import ModelBundle
from hw_prune.prune.plan import Plan
from hw_prune.provenance import provenance


def prune_bundle(bundle: ModelBundle, widths: dict[str, int], mode: str, criterion: str = "l2",
                 loader: Any = None, info: GraphInfo | None = None, scores: dict[str, np.ndarray] | None = None,
                 extra: dict[str, Any] | None = None, exclude: Sequence[str] = (),
                 **prov: Any) -> tuple[ModelBundle, Plan]:
    """Prune a COPY of bundle.model to `widths` (names -> kept width; others unchanged); returns (new bundle, plan)."""
    shape = tuple(bundle.input_shape)
    before = count_flops(bundle.model, (1, *shape[1:]))
    net = copy.deepcopy(bundle.model)
    info_copy = analyse(net, shape, exclude)
    if scores is None and any(widths.get(g.name, g.width) < g.width for g in info_copy.groups):
        from hw_prune.prune.importance import group_importance

        todo = [g for g in info_copy.groups if widths.get(g.name, g.width) < g.width]
        scores = group_importance(net, shape, todo, criterion, loader=loader, info=info_copy)
    full = {g.name: g for g in info_copy.groups}
    apply_widths(net, shape, {k: v for k, v in widths.items() if k in full and v != full[k].width},
                 scores=scores, criterion=criterion, info=info_copy)
    after = count_flops(net, (1, *shape[1:]))
    groups = [{"name": g.name, "width_before": g.width, "width_after": int(widths.get(g.name, g.width)),
               "members": [list(m) for m in g.members], "divisor": g.divisor, "prunable": g.prunable}
              for g in info_copy.groups]
    prior = bundle.meta.get("plan") if isinstance(bundle.meta.get("plan"), dict) else None
    plan = Plan(model_source=bundle.source, input_shape=list(shape), mode=mode, criterion=criterion,
                groups=groups, flops_before=before.flops, flops_after=after.flops,
                provenance=provenance(board=None, backend=None, simulated=None, **prov),
                extra={**(extra or {}), "params_before": before.params, "params_after": after.params,
                       **({"parent_plan_mode": prior.get("mode")} if prior else {})})
    meta = {k: v for k, v in bundle.meta.items() if k not in ("plan", "top1", "history")}
    new = ModelBundle(net, bundle.source, bundle.input_shape, bundle.num_classes,
                      {**meta, "plan": plan.to_dict()})
    return new, plan
