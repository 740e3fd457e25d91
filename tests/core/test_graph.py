"""Channel groups, physical pruning at arbitrary widths, importance and FLOPs (in-process, real models)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hw_prune.errors import UserError
from hw_prune.flops import count_flops
from hw_prune.graph import apply_widths, channel_groups, removal_indices
from hw_prune.models import build_builtin
from hw_prune.prune.flopmodel import FlopModel
from hw_prune.prune.importance import group_importance
from tests.core.custom_net import make_net

SHAPE = (1, 3, 32, 32)
MODELS = ["resnet20", "resnet50", "mobilenetv2", "densenet-tiny", "resnext-tiny", "vgg-small"]


def _torch_flops(m: torch.nn.Module) -> int:
    m.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.zeros(*SHAPE))
    return fc.get_total_flops()


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "densenet-tiny"])
def test_count_flops_equals_torch_counter(name: str) -> None:
    m = build_builtin(name)
    rep = count_flops(m, SHAPE)
    assert rep.flops == _torch_flops(m)
    assert rep.params == sum(p.numel() for p in m.parameters())
    convs = [d for d in rep.layers if d["type"] in ("Conv2d", "Linear")]
    assert sum(d["flops"] for d in convs) == rep.flops  # conv/linear are all that torch counts here
    assert rep.output_shape == [1, 10]


@pytest.mark.parametrize("name", MODELS)
def test_apply_random_widths(name: str) -> None:
    rng = np.random.default_rng(hash(name) % 2**32)
    model = build_builtin(name).eval()
    groups = channel_groups(model, SHAPE)
    assert not groups[-1].prunable or any(not g.prunable for g in groups)  # classifier outputs are fixed
    fm = FlopModel(model, SHAPE)
    for trial in range(2):
        widths = {g.name: int(rng.integers(1, g.width // g.divisor + 1)) * g.divisor
                  for g in groups if g.prunable}
        if trial == 1:  # extremes: narrowest allowed width for every group
            widths = {g.name: g.divisor for g in groups if g.prunable}
        net = apply_widths(copy.deepcopy(model), SHAPE, widths)
        out = net(torch.randn(2, *SHAPE[1:]))
        assert out.shape == (2, 10)
        assert count_flops(net, SHAPE).flops == fm.flops(widths) == _torch_flops(net)
        if trial == 0:
            after = {g.name: g.width for g in channel_groups(net, SHAPE)}
            assert all(after[k] == v for k, v in widths.items() if k in after)


def test_groups_cover_structures() -> None:
    g = {c.name: c for c in channel_groups(build_builtin("resnet20"), SHAPE)}
    stem = g["conv1"]  # stem + the residual stream of stage 1 are one group
    assert ("layer1.2.conv2", "out") in stem.members and ("layer2.0.conv1", "in") in stem.members
    assert not g["fc"].prunable
    gx = channel_groups(build_builtin("resnext-tiny"), SHAPE)
    assert any(c.divisor == 4 for c in gx)  # grouped 3x3 convs (cardinality 4)
    gd = {c.name: c for c in channel_groups(build_builtin("densenet-tiny"), SHAPE)}
    # a dense layer's new features feed every later layer of the block through concatenation
    body = [c for n, c in gd.items() if n.endswith("body.3")][0]
    assert sum(1 for m, side in body.members if side == "in") >= 2
    gm = channel_groups(build_builtin("mobilenetv2"), SHAPE)
    assert any(any(m.endswith(".conv.1.0") and s == "out" for m, s in c.members) for c in gm)  # depthwise


def test_exclude_and_unknown_exclude() -> None:
    m = build_builtin("resnet20")
    g = {c.name: c for c in channel_groups(m, SHAPE, exclude=["layer2.0.conv1"])}
    assert not g["layer2.0.conv1"].prunable and g["layer2.1.conv1"].prunable
    with pytest.raises(UserError, match="no such module"):
        channel_groups(m, SHAPE, exclude=["nonexistent"])


def test_custom_factory_model_prunes() -> None:
    m = make_net().eval()
    groups = channel_groups(m, SHAPE)
    widths = {g.name: max(g.divisor, g.width // 2) for g in groups if g.prunable}
    net = apply_widths(copy.deepcopy(m), SHAPE, widths)
    assert net(torch.randn(1, *SHAPE[1:])).shape == (1, 10)


@pytest.mark.parametrize("name,group,bn", [("vgg-small", "features.0", "features.1"),
                                            ("resnet20", "layer2.1.conv1", "layer2.1.bn1")])
def test_pruning_dead_channels_keeps_function(name: str, group: str, bn: str) -> None:
    """Channels whose BN output is exactly zero are removed first (bn criterion) and the output is unchanged."""
    torch.manual_seed(0)
    m = build_builtin(name).eval()
    mods = dict(m.named_modules())
    dead = [1, 4, 7]
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
        mods[bn].weight[dead] = 0
        mods[bn].bias[dead] = 0
    x = torch.randn(4, *SHAPE[1:])
    with torch.no_grad():
        ref = m(x)
    width = {c.name: c.width for c in channel_groups(m, SHAPE)}[group]
    scores = group_importance(m, SHAPE, [group], "bn")
    assert set(np.argsort(scores[group])[:3].tolist()) == set(dead)
    scale = float(ref.abs().max())
    net = apply_widths(copy.deepcopy(m), SHAPE, {group: width - 3}, criterion="bn")
    assert float((net(x).detach() - ref).abs().max()) <= 1e-5 * scale
    live_first = np.ones(width)
    live_first[dead] = 10.0  # now three live channels are the least important
    net2 = apply_widths(copy.deepcopy(m), SHAPE, {group: width - 3}, scores={group: live_first})
    assert float((net2(x).detach() - ref).abs().max()) > 1e-3 * scale  # removing live channels does change it


def test_importance_criteria() -> None:
    m = build_builtin("resnet20")
    groups = [g for g in channel_groups(m, SHAPE) if g.prunable]
    for crit in ("l1", "l2", "bn"):
        s = group_importance(m, SHAPE, groups, crit)
        assert all(len(s[g.name]) == g.width and np.all(s[g.name] >= 0) for g in groups)
    with pytest.raises(UserError, match="taylor"):
        group_importance(m, SHAPE, groups, "taylor")
    x, y = torch.randn(8, *SHAPE[1:]), torch.randint(0, 10, (8,))
    s = group_importance(m, SHAPE, groups, "taylor", loader=[(x, y)] * 2, batches=2)
    assert all(s[g.name].sum() > 0 for g in groups)
    assert all(p.grad is None for p in m.parameters())  # gradients are cleaned up


def test_removal_indices_grouped_blocks() -> None:
    scores = np.arange(16, dtype=float)
    idx = removal_indices(scores, 8, blocks=4)  # keep 2 of every block of 4, same positions
    assert len(idx) == 8
    rel = {i % 4 for i in idx}
    assert rel == {0, 1}
