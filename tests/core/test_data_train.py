"""Synthetic and folder data, training checkpoints / --resume, finetune."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from hw_prune.data import load_data, make_loader
from hw_prune.data.synthetic import VARIANTS, cache_dir
from hw_prune.models import build_builtin
from hw_prune.train import evaluate, train_model
from tests.conftest import run_cli


def test_synthetic_is_seeded_balanced_and_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HW_PRUNE_CACHE", str(tmp_path / "cache"))
    a = load_data("synthetic:tiny", (1, 3, 24, 24), seed=3)
    assert list(cache_dir().glob("synthetic-tiny-24x24-s3-*.npz"))
    b = load_data("synthetic:tiny", (1, 3, 24, 24), seed=3)  # from the cache
    c = load_data("synthetic:tiny", (1, 3, 24, 24), seed=4)
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, c.train.x)
    assert a.train.x.shape == (VARIANTS["tiny"].n_train, 3, 24, 24) and a.num_classes == 10
    counts = np.bincount(a.train.y.numpy(), minlength=10)
    assert counts.min() >= counts.max() - 1
    g = load_data("synthetic:tiny", (1, 1, 24, 24), seed=3)
    assert g.train.x.shape[1] == 1
    x, y = next(iter(make_loader(a.val, 16)))
    assert x.shape == (16, 3, 24, 24) and y.dtype == torch.int64


def _write_folder(root, classes=("cat", "dog"), n=6) -> None:
    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = (rng.uniform(0, 1, (20, 30, 3)) * 80 + 150 * k).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")


def test_folder_loader(tmp_path) -> None:
    _write_folder(tmp_path / "flat")
    d = load_data(str(tmp_path / "flat"), (1, 3, 16, 16))
    assert d.num_classes == 2 and len(d.train) == 10 and len(d.val) == 2  # every 5th file -> val
    assert d.train.x.shape[-2:] == (16, 16)
    _write_folder(tmp_path / "split" / "train")
    _write_folder(tmp_path / "split" / "val", n=3)
    d2 = load_data(str(tmp_path / "split"), (1, 3, 16, 16))
    assert len(d2.train) == 12 and len(d2.val) == 6 and d2.classes == ["cat", "dog"]


def test_train_checkpoint_and_resume(tmp_path) -> None:
    torch.manual_seed(0)
    splits = load_data("synthetic:tiny")
    ck = tmp_path / "ck.ckpt"
    m = build_builtin("resnet20")
    r1 = train_model(m, splits, 1, checkpoint=ck, progress=False)
    assert ck.is_file() and len(r1["history"]) == 1
    r2 = train_model(m, splits, 2, checkpoint=ck, resume=True, progress=False)
    assert [h["epoch"] for h in r2["history"]] == [1, 2]
    assert r2["history"][0] == r1["history"][0]  # epoch 1 was not redone
    ev = evaluate(m, make_loader(splits.val, 64))
    assert 0 <= ev["top1"] <= ev["top5"] <= 100 and ev["loss"] > 0


def test_train_and_finetune_cli(tmp_path) -> None:
    out = tmp_path / "m.pt"
    r = run_cli("train", "--model", "resnet20", "--data", "synthetic:tiny", "--epochs", "1", "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    d = r.json()
    assert d["model"] == str(out) and 0 <= d["top1"] <= 100 and out.is_file()
    assert "epoch 1/1" in r.stderr
    r2 = run_cli("train", "--model", "resnet20", "--data", "synthetic:tiny", "--epochs", "1", "-o", out, "--resume",
                 "--json")
    assert r2.json()["top1"] == d["top1"]  # finished checkpoint: nothing retrained
    p = run_cli("prune", "--model", out, "--uniform", "0.25", "-o", tmp_path / "p.pt", "--json")
    assert p.returncode == 0, p.stderr
    f = run_cli("finetune", "--model", tmp_path / "p.pt", "--data", "synthetic:tiny", "--epochs", "1",
                "-o", tmp_path / "f.pt", "--json")
    assert f.returncode == 0, f.stderr
    st = run_cli("stat", "--model", tmp_path / "f.pt", "--json").json()
    assert st["flops"] == p.json()["flops_after"]  # finetuning keeps the pruned architecture
