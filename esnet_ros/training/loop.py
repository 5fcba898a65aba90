"""One epoch of training, one pass of validation, and the optimizer and schedule they step.

The paper's recipe (Wang et al. 2019, section 4.2): Adam and a poly learning rate stepped every
iteration; the encoder stage trains against nearest-downsampled 1/8 labels. :mod:`esnet_ros.training.train`
builds the run, :mod:`esnet_ros.training.stages` drives these over the stages and epochs.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from esnet_ros.training.metrics import ConfusionMatrix

__all__ = ["train_one_epoch", "evaluate", "upsample_argmax", "build_optimizer", "poly_scheduler"]

# One logger name for the whole training log, whichever of its modules writes the line.
log = logging.getLogger("esnet_ros.training.train")


def poly_scheduler(optimizer: torch.optim.Optimizer, total_iters: int, power: float):
    """``lr = base * (1 - it/total) ** power``, stepped every iteration."""
    total = max(1, int(total_iters))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: max(0.0, 1.0 - it / total) ** power)


def build_optimizer(args, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        model.parameters(), lr=args.lr, betas=tuple(args.betas), eps=args.eps, weight_decay=args.weight_decay
    )


def _downsample_targets(target: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour downsampling of an (N,H,W) int64 label map."""
    return F.interpolate(target[:, None].float(), size=hw, mode="nearest")[:, 0].long()


def train_one_epoch(
    model,
    criterion,
    optimizer,
    scheduler,
    loader,
    device,
    epoch: int,
    *,
    encoder_only: bool = False,
    scaler=None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    print_freq: int = 20,
    progress: bool = True,
    writer=None,
    global_step: int = 0,
) -> float:
    """One pass over ``loader``; returns the mean loss (over this process's batches).

    ``amp_dtype`` turns on autocast: float16 needs a gradient ``scaler``, bfloat16 does not.
    ``channels_last`` feeds the images in that layout (the model's own, set by the caller).
    """
    model.train()
    if amp_dtype is None and scaler is not None:
        amp_dtype = torch.float16
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    total, count = 0.0, 0
    bar = _progress_bar(loader, epoch, encoder_only) if progress else None
    for i, (images, targets) in enumerate(bar if bar is not None else loader):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        loss = _loss(model, criterion, images, targets, encoder_only=encoder_only, amp_dtype=amp_dtype)
        _step(loss, optimizer, scheduler, scaler)
        value = _finite(loss, epoch, i)
        total += value
        count += 1
        lr = optimizer.param_groups[0]["lr"]
        if bar is not None:
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")
        if writer is not None:
            writer.add_scalar("train/loss_iter", value, global_step + i)
        if not progress and print_freq and (i % print_freq == 0):
            log.info("epoch %d [%d/%d] loss %.4f lr %.2e", epoch, i, len(loader), value, lr)
    if bar is not None:
        bar.close()
    return total / max(count, 1)


def _progress_bar(loader, epoch: int, encoder_only: bool):
    from tqdm import tqdm

    return tqdm(
        loader,
        desc=f"epoch {epoch}{' (encoder)' if encoder_only else ''}",
        unit="batch",
        dynamic_ncols=True,
        leave=False,
    )


def _loss(
    model: nn.Module,
    criterion,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    encoder_only: bool,
    amp_dtype: torch.dtype | None,
) -> torch.Tensor:
    """The forward pass and the loss, under autocast with ``amp_dtype``; the encoder against 1/8 labels."""
    with torch.autocast(
        device_type=images.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
    ):
        logits = model(images, encoder_only=encoder_only)
        if encoder_only:
            targets = _downsample_targets(targets, tuple(logits.shape[2:]))
        return criterion(logits.float(), targets)


def _finite(loss: torch.Tensor, epoch: int, iteration: int) -> float:
    """The loss as a float; ``FloatingPointError`` when it is NaN or infinite."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(
            f"loss is {value} at epoch {epoch}, iteration {iteration}; lower --lr or check the labels"
        )
    return value


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, scaler) -> None:
    """Backward, the optimizer step (through the gradient scaler with float16) and the schedule's step."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    scheduler.step()


@torch.inference_mode()
def evaluate(model: nn.Module, loader, device, confmat: ConfusionMatrix, *, progress: bool = False) -> ConfusionMatrix:
    """Fill ``confmat`` with predictions at each target's resolution; all-reduced across processes."""
    model.eval()
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, desc="val", unit="batch", dynamic_ncols=True, leave=False)
    for images, targets in iterator:
        images = images.to(device, non_blocking=True)
        if isinstance(targets, torch.Tensor):
            targets = list(targets)
        logits = model(images)
        for logit, target in zip(logits, targets, strict=True):
            pred = upsample_argmax(logit, tuple(target.shape))
            confmat.update(target.to(device), pred)
    confmat.all_reduce()
    return confmat


def upsample_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(C,h,w)`` logits -> ``(H,W)`` train ids at ``size`` (bilinear logits, then argmax)."""
    if tuple(logits.shape[1:]) != tuple(size):
        logits = F.interpolate(logits[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    return logits.argmax(0)
