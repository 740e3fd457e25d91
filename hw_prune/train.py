"""Training, finetuning and evaluation loops (CPU-sized defaults), with atomic per-epoch checkpoints.

`train_model(...)` trains in place. With `checkpoint=PATH` it writes model + optimizer + scheduler +
RNG state after every epoch (temp file + rename), and `resume=True` continues from the last
finished epoch of a checkpoint made with the same network shapes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from hw_prune import ui
from hw_prune.atomic import atomic_path
from hw_prune.errors import UserError

# Sized for 2 CPU cores: resnet20 on the default synthetic set (5000 images) trains in ~2-3 minutes.
DEFAULT_EPOCHS = 8
DEFAULT_FINETUNE_EPOCHS = 2
DEFAULT_BATCH = 64
DEFAULT_LR = {"sgd": 0.05, "adamw": 1e-3}
DEFAULT_OPTIMIZER = "adamw"  # SGD sits on a long plateau on the synthetic set in short CPU schedules
DEFAULT_WD = {"sgd": 5e-4, "adamw": 0.05}
CKPT_FORMAT = "hw_prune-train-ckpt/1"


def _model_of(m: Any) -> nn.Module:
    return m.model if hasattr(m, "model") and isinstance(m.model, nn.Module) else m


@torch.no_grad()
def evaluate(model: Any, loader: DataLoader, max_batches: int | None = None) -> dict[str, float]:
    """Top-1 / top-5 (percent) and mean cross-entropy loss; the model is left in its previous mode."""
    net = _model_of(model)
    was = net.training
    net.eval()
    n, c1, c5, loss = 0, 0, 0, 0.0
    try:
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            out = net(x)
            loss += F.cross_entropy(out, y, reduction="sum").item()
            k = min(5, out.shape[1])
            top = out.topk(k, dim=1).indices
            hit = top == y[:, None]
            c1 += int(hit[:, 0].sum())
            c5 += int(hit.any(dim=1).sum())
            n += len(y)
    finally:
        net.train(was)
    if n == 0:
        raise UserError("the evaluation set is empty; use more data")
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "loss": loss / n, "n": n}


def _optimizer(net: nn.Module, name: str, lr: float, wd: float) -> torch.optim.Optimizer:
    # no weight decay on BN / bias parameters (standard practice; matters for short schedules)
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise UserError(f"unknown optimizer '{name}'; use sgd or adamw")


def _lr_lambda(schedule: str, total_steps: int, warmup: int):
    if schedule not in ("cosine", "step"):
        raise UserError(f"unknown schedule '{schedule}'; use cosine or step")

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return 0.1 ** (int(t >= 0.5) + int(t >= 0.75))

    return f


def _save_ckpt(path: Path, net: nn.Module, opt: torch.optim.Optimizer, sched: Any, epoch: int,
               history: list[dict], config: dict[str, Any]) -> None:
    payload = {"format": CKPT_FORMAT, "epoch": epoch, "history": history, "config": config,
               "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
               "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
               "rng": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load_ckpt(path: Path) -> dict[str, Any]:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read checkpoint {path}: {str(e).splitlines()[0][:120]}; delete it or drop "
                        "--resume") from None
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise UserError(f"{path} is not a hw_prune training checkpoint; delete it or drop --resume")
    return ck


def train_model(bundle_or_model: Any, splits: Any, epochs: int = DEFAULT_EPOCHS, lr: float | None = None,
                optimizer: str = DEFAULT_OPTIMIZER, schedule: str = "cosine", batch_size: int = DEFAULT_BATCH,
                weight_decay: float | None = None, checkpoint: str | Path | None = None, resume: bool = False,
                progress: bool = True, seed: int = 0, warmup_epochs: float = 0.3,
                eval_batches: int | None = None, label: str = "train", keep_best: bool = False) -> dict[str, Any]:
    """Train in place; returns {'history': [per-epoch dict], 'top1', 'top5', 'loss', 'epochs', 'seconds'}.

    keep_best: at the end, restore the weights of the epoch with the best validation top-1
    (used by finetuning, where a short schedule can end on a worse epoch).
    """
    net = _model_of(bundle_or_model)
    if epochs < 0:
        raise UserError(f"--epochs {epochs} must be >= 0")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size} must be >= 1")
    optimizer = optimizer.lower()
    lr = DEFAULT_LR.get(optimizer, 0.05) if lr is None else lr
    if not lr > 0:
        raise UserError(f"--lr {lr} must be > 0")
    wd = DEFAULT_WD.get(optimizer, 5e-4) if weight_decay is None else weight_decay
    torch.manual_seed(seed)
    train_loader = DataLoader(splits.train, batch_size=batch_size, shuffle=True, num_workers=0,
                              generator=torch.Generator().manual_seed(seed), drop_last=len(splits.train) > batch_size)
    val_loader = DataLoader(splits.val, batch_size=256, shuffle=False, num_workers=0)
    steps_per_epoch = max(1, len(train_loader))
    opt = _optimizer(net, optimizer, lr, wd)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(schedule, max(1, epochs) * steps_per_epoch, int(warmup_epochs * steps_per_epoch)))
    config = {"epochs": epochs, "lr": lr, "optimizer": optimizer, "schedule": schedule, "batch_size": batch_size,
              "weight_decay": wd, "seed": seed}
    history: list[dict] = []
    start_epoch = 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and resume and ckpt.is_file():
        ck = _load_ckpt(ckpt)
        try:
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"checkpoint {ckpt} does not fit this model ({str(e).splitlines()[0][:100]}); "
                            "delete it or drop --resume") from None
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"])
        start_epoch, history = int(ck["epoch"]), list(ck["history"])
        if progress:
            ui.info(f"[{label}] resuming from {ckpt} after epoch {start_epoch}/{epochs}")
    t0 = time.time()
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    for epoch in range(start_epoch, epochs):
        net.train()
        tot, n, correct = 0.0, 0, 0
        te = time.time()
        it = ui.progress(train_loader, total=steps_per_epoch, desc=f"{label} epoch {epoch + 1}/{epochs}",
                         disable=not progress)
        for x, y in it:
            out = net(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
        ev = evaluate(net, val_loader, eval_batches)
        rec = {"epoch": epoch + 1, "train_loss": tot / max(n, 1), "train_top1": 100.0 * correct / max(n, 1),
               "val_top1": ev["top1"], "val_top5": ev["top5"], "val_loss": ev["loss"],
               "lr": opt.param_groups[0]["lr"], "seconds": time.time() - te}
        history.append(rec)
        if progress:
            ui.info(f"[{label}] epoch {epoch + 1}/{epochs}: loss {rec['train_loss']:.3f}  "
                    f"val top-1 {ev['top1']:.2f}%  top-5 {ev['top5']:.2f}%  ({rec['seconds']:.0f}s)")
        if keep_best and (best is None or ev["top1"] > best[0]):
            best = (ev["top1"], {k: v.detach().clone() for k, v in net.state_dict().items()})
        if ckpt:
            _save_ckpt(ckpt, net, opt, sched, epoch + 1, history, config)
    if best is not None and history and best[0] > history[-1]["val_top1"]:
        net.load_state_dict(best[1])
        history[-1] = {**history[-1], "restored_best": best[0]}
        start_epoch = epochs  # forces the final evaluation below on the restored weights
        if progress:
            ui.info(f"[{label}] keeping the best epoch's weights (val top-1 {best[0]:.2f}%)")
    if history and len(history) and history[-1]["epoch"] == epochs and start_epoch < epochs:
        final = {"top1": history[-1]["val_top1"], "top5": history[-1]["val_top5"], "loss": history[-1]["val_loss"]}
    else:  # nothing trained (0 epochs or a finished checkpoint): evaluate what we have
        ev = evaluate(net, val_loader, eval_batches)
        final = {"top1": ev["top1"], "top5": ev["top5"], "loss": ev["loss"]}
    net.eval()
    return {"history": history, **final, "epochs": epochs, "seconds": time.time() - t0, "config": config}
