"""Width selection: vai_p-style threshold bisection on a sensitivity table, uniform, schedule."""

from __future__ import annotations

import pytest

from hw_prune.errors import UserError
from hw_prune.models import build_builtin
from hw_prune.prune import modes
from hw_prune.prune.ana import SensitivityTable
from hw_prune.prune.flopmodel import FlopModel
from hw_prune.prune.iterative import schedule

SHAPE = (1, 3, 32, 32)
RATIOS = [round(0.1 * i, 1) for i in range(1, 10)]


def _table(fm: FlopModel, sensitive: set[str]) -> SensitivityTable:
    """A table where `sensitive` groups lose 8 points per 0.1 ratio and the others 1 point."""
    cells = {}
    for g in fm.info.groups:
        if g.prunable:
            k = 80.0 if g.name in sensitive else 10.0
            cells[g.name] = {f"{r:.3g}": 90.0 - k * r for r in RATIOS}
    return SensitivityTable(90.0, RATIOS, cells, {g.name: g.width for g in fm.info.groups}, "l2", {})


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2-small", "densenet-tiny"])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_ratio_from_table_hits_flops_within_one_percent(name: str, ratio: float) -> None:
    fm = FlopModel(build_builtin(name), SHAPE)
    pr = [g.name for g in fm.info.groups if g.prunable]
    t = _table(fm, set(pr[::3]))
    w, f = modes.ratio_widths_from_table(fm.info.groups, t, fm, ratio)
    assert f == fm.flops(w)
    assert abs(f / fm.total - (1 - ratio)) <= 0.01 * (1 - ratio) + 1e-9, f / fm.total
    kept = {n: w.get(n, fm.widths0[n]) / fm.widths0[n] for n in pr}
    sens = [kept[n] for n in pr[::3]]
    rest = [kept[n] for n in pr if n not in pr[::3]]
    assert sum(sens) / len(sens) > sum(rest) / len(rest)  # sensitive groups keep more channels


def test_threshold_and_uniform_widths() -> None:
    fm = FlopModel(build_builtin("resnet20"), SHAPE)
    t = _table(fm, set())
    w = modes.threshold_widths(fm.info.groups, t, 3.0)  # 10 pts per unit ratio -> ratio 0.3
    assert all(w[g.name] == round(g.width * 0.7) for g in fm.info.groups if g.prunable)
    u = modes.uniform_widths(fm.info.groups, 0.5, channel_divisible=4)
    assert all(v % 4 == 0 and v <= fm.widths0[k] for k, v in u.items())
    with pytest.raises(UserError, match="cannot remove that much"):
        modes.ratio_widths_from_table(fm.info.groups, _table(fm, set()), fm, 0.995)


def test_schedule_large_to_small() -> None:
    assert schedule(1) == [1.0]
    s = schedule(3)
    steps = [s[0]] + [b - a for a, b in zip(s, s[1:])]
    assert s[-1] == 1.0 and steps == sorted(steps, reverse=True)


@pytest.mark.parametrize("name", ["resnet20", "resnext-tiny"])
def test_ratio_from_importance_hits_flops(name: str) -> None:
    from hw_prune.prune.importance import group_importance

    m = build_builtin(name)
    fm = FlopModel(m, SHAPE)
    pr = [g for g in fm.info.groups if g.prunable]
    scores = group_importance(m, SHAPE, pr, "l2", info=fm.info)
    for ratio in (0.3, 0.6):
        w, f = modes.ratio_widths_from_importance(fm.info.groups, scores, fm, ratio, channel_divisible=2)
        assert abs(f / fm.total - (1 - ratio)) <= 0.01 * (1 - ratio) + 1e-9
        assert all(v % 2 == 0 or v == fm.widths0[k] for k, v in w.items())
