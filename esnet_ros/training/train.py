"""``esnet train``: the paper's recipe by default, in the torchvision ``references/segmentation`` style.

Recipe (Wang et al. 2019, section 4.2, and the ERFNet lineage): Adam (lr 5e-4, betas 0.9/0.999,
eps 1e-8, weight decay 1e-4), poly learning rate (power 0.9, stepped every iteration), 1024x512
input (images bilinear, labels nearest), random horizontal flips and small translations,
class-weighted cross-entropy with ENet weights ``1/ln(1.10 + p_c)`` from the training labels,
ignore label 255, and optionally two stages (``--encoder-epochs``: the encoder with its 1x1 head
against 1/8 labels first, then the whole network).

Run management (:mod:`esnet_ros.training.run_files`): ``OUTPUT/checkpoint.pth`` resumes everything (model, optimizer, scheduler,
epoch; ``--resume``), ``best.safetensors`` is the best model by val mIoU and ``last.safetensors``
the latest (both with the full checkpoint metadata), ``args.yaml``, ``metrics.csv``,
``training_curve.png`` and TensorBoard scalars under ``tb/``.

Distributed (:mod:`esnet_ros.training.distributed`): launch with ``torchrun --nproc_per_node N -m esnet_ros.cli train ...``; RANK,
WORLD_SIZE and LOCAL_RANK select the process (gloo on CPU, nccl on CUDA).  AMP runs on CUDA.
"""

from __future__ import annotations

import logging
import math
import os
import pathlib
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from esnet_ros.core.checkpoint import (
    DEFAULT_NORMALIZATION,
    load_checkpoint,
    make_metadata,
    save_checkpoint,
)
from esnet_ros.data.datasets import (
    SegmentationDataset,
    class_pixel_counts,
    enet_class_weights,
    eval_transforms,
    is_cityscapes_layout,
    train_transforms,
)
from esnet_ros.core.labels import LabelSet, cityscapes, load_labels_yaml
from esnet_ros.training.distributed import ShardSampler, barrier, collate_eval, init_distributed
from esnet_ros.training.metrics import ConfusionMatrix
from esnet_ros.training.run_files import (
    RESUME_FORMAT,
    append_csv,
    command_line,
    load_resume,
    plot_training_curve,
    save_resume,
    write_args_yaml,
)
from esnet_ros.core.model import ESNet, check_input_size

__all__ = [
    "main",
    "build_dataset",
    "build_labels",
    "train_one_epoch",
    "evaluate",
    "upsample_argmax",
    "build_loaders",
    "parse_size",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


def parse_size(text: str, what: str = "--input-size") -> tuple[int, int]:
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"{what} {text!r} must look like WIDTHxHEIGHT, e.g. 1024x512") from None
    check_input_size(w, h, what=what)
    return w, h


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def build_labels(data: str | pathlib.Path, labels_yaml: str | None) -> LabelSet:
    """The class list: ``labels_yaml``, else ``DATA/labels.yaml`` for a custom layout, else Cityscapes."""
    if labels_yaml:
        return load_labels_yaml(labels_yaml)
    data = pathlib.Path(data)
    if not is_cityscapes_layout(data) and (data / "labels.yaml").is_file():
        return load_labels_yaml(data / "labels.yaml")
    if not is_cityscapes_layout(data) and (data / "images").is_dir():
        raise FileNotFoundError(
            f"custom dataset {data} needs a class list: pass --labels LABELS.yaml or put labels.yaml in {data} "
            f"(format: see esnet_ros/core/labels.py)"
        )
    return cityscapes()


def build_dataset(args, split: str, labels: LabelSet, train: bool) -> SegmentationDataset:
    """The training (augmented, labels at input size) or validation (full-res labels) dataset."""
    size = parse_size(args.input_size)
    if train:
        crop = parse_size(args.crop_size, "--crop-size") if getattr(args, "crop_size", None) else None
        transforms = train_transforms(size, flip=not args.no_flip, translate=args.translate,
                                      ignore_index=labels.ignore_index, crop_size=crop)
    else:
        transforms = eval_transforms(size, full_resolution_labels=not getattr(args, "val_at_input_size", False))
    cache = size if (train and getattr(args, "cache", False)) else None
    dataset = SegmentationDataset(args.data, split, labels, transforms, label_kind=args.label_kind, cache_size=cache)
    limit = getattr(args, "max_train_images", 0)
    if train and limit:
        dataset.samples = dataset.samples[:limit]
    return dataset


def class_weights(args, dataset: SegmentationDataset) -> torch.Tensor | None:
    n = dataset.labels.num_classes
    spec = str(args.class_weights).strip().lower()
    if spec == "none":
        return None
    if spec == "enet":
        counts = class_pixel_counts(dataset, parse_size(args.input_size))
        return torch.tensor(enet_class_weights(counts, args.enet_c), dtype=torch.float32)
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(f"--class-weights {args.class_weights!r} must be 'enet', 'none' or {n} comma-separated numbers") from None
    if len(values) != n:
        raise ValueError(f"--class-weights has {len(values)} values but the dataset has {n} classes; give {n}")
    return torch.tensor(values, dtype=torch.float32)


def poly_scheduler(optimizer: torch.optim.Optimizer, total_iters: int, power: float):
    """``lr = base * (1 - it/total) ** power``, stepped every iteration."""
    total = max(1, int(total_iters))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: max(0.0, 1.0 - it / total) ** power)


def build_optimizer(args, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=args.lr, betas=tuple(args.betas), eps=args.eps,
                            weight_decay=args.weight_decay)


def _precision(args, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, channels_last)`` for this run's device and flags."""
    if args.bf16:
        return torch.bfloat16, device.type == "cpu"
    if device.type == "cuda" and not args.no_amp:
        return torch.float16, False
    return None, False


def _downsample_targets(target: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour downsampling of an (N,H,W) int64 label map."""
    return F.interpolate(target[:, None].float(), size=hw, mode="nearest")[:, 0].long()


# --------------------------------------------------------------------------------------------
# Train / evaluate
# --------------------------------------------------------------------------------------------


def train_one_epoch(model, criterion, optimizer, scheduler, loader, device, epoch: int, *, encoder_only: bool = False,
                    scaler=None, amp_dtype: torch.dtype | None = None, channels_last: bool = False,
                    print_freq: int = 20, progress: bool = True, writer=None, global_step: int = 0) -> float:
    """One pass over ``loader``; returns the mean loss (over this process's batches).

    ``amp_dtype`` turns on autocast: float16 needs a gradient ``scaler``, bfloat16 does not.
    ``channels_last`` feeds the images in that layout (the model's own, set by the caller).
    """
    model.train()
    if amp_dtype is None and scaler is not None:
        amp_dtype = torch.float16
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    total, count = 0.0, 0
    iterator = loader
    bar = None
    if progress:
        from tqdm import tqdm

        bar = iterator = tqdm(loader, desc=f"epoch {epoch}{' (encoder)' if encoder_only else ''}", unit="batch",
                              dynamic_ncols=True, leave=False)
    for i, (images, targets) in enumerate(iterator):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images, encoder_only=encoder_only)
            if encoder_only:
                targets = _downsample_targets(targets, tuple(logits.shape[2:]))
            loss = criterion(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at epoch {epoch}, iteration {i}; lower --lr or check the labels")
        total += value
        count += 1
        if bar is not None:
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        if writer is not None:
            writer.add_scalar("train/loss_iter", value, global_step + i)
        if not progress and print_freq and (i % print_freq == 0):
            log.info("epoch %d [%d/%d] loss %.4f lr %.2e", epoch, i, len(loader), value, optimizer.param_groups[0]["lr"])
    if bar is not None:
        bar.close()
    return total / max(count, 1)


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
        for logit, target in zip(logits, targets):
            pred = upsample_argmax(logit, tuple(target.shape))
            confmat.update(target.to(device), pred)
    confmat.all_reduce()
    return confmat


def upsample_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(C,h,w)`` logits -> ``(H,W)`` train ids at ``size`` (bilinear logits, then argmax)."""
    if tuple(logits.shape[1:]) != tuple(size):
        logits = F.interpolate(logits[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    return logits.argmax(0)


def init_from(model: ESNet, path: str | pathlib.Path, labels: LabelSet) -> dict[str, Any]:
    """Copy a model file's weights into ``model`` (fine-tuning); returns the file's metadata.

    ``load_checkpoint`` refuses a file whose class count differs from ``labels``, naming the fix.
    """
    source, meta = load_checkpoint(path, labels=labels)
    model.load_state_dict(source.state_dict(), strict=model.encoder_output_conv is None)
    return meta


def _recipe(args, labels: LabelSet, weights: torch.Tensor | None, world: int,
            amp_dtype: torch.dtype | None = None, defaults: dict[str, Any] | None = None) -> dict:
    return {
        "command": command_line(args, defaults),
        "trainer": "esnet_ros.training.train",
        "optimizer": {"name": "Adam", "lr": args.lr, "betas": list(args.betas), "eps": args.eps,
                      "weight_decay": args.weight_decay},
        "schedule": {"name": "poly", "power": args.poly_power, "step": "iteration"},
        "epochs": args.epochs,
        "encoder_epochs": args.encoder_epochs,
        "batch_size": args.batch_size,
        "world_size": world,
        "autocast": str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else None,
        "input_size": list(parse_size(args.input_size)),
        "augmentation": {"hflip": not args.no_flip, "translate_px": args.translate,
                         "crop_size": list(parse_size(args.crop_size, "--crop-size")) if args.crop_size else None},
        "loss": "cross_entropy",
        "ignore_index": labels.ignore_index,
        "class_weights": {"spec": str(args.class_weights), "enet_c": args.enet_c,
                          "values": [round(float(v), 6) for v in weights] if weights is not None else None},
        "data": str(args.data),
        "train_split": args.train_split,
        "val_split": args.val_split,
        "seed": args.seed,
    }


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def build_loaders(args, train_set, val_set, rank: int, world: int, device: torch.device):
    """``(train_loader, val_loader)``: distributed sampling of the training set; validation split
    without padding so every image is scored once (``val_loader`` is ``None`` without a val set)."""
    train_sampler = (torch.utils.data.distributed.DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed)
                     if world > 1 else torch.utils.data.RandomSampler(train_set))
    loader_kw = {"num_workers": args.workers, "pin_memory": device.type == "cuda",
                 "persistent_workers": args.workers > 0}
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, sampler=train_sampler,
                                               drop_last=len(train_set) >= args.batch_size * world, **loader_kw)
    val_loader = None
    if val_set is not None:
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=args.batch_size,
                                                 sampler=ShardSampler(len(val_set), rank, world),
                                                 collate_fn=collate_eval, **loader_kw)
    return train_loader, val_loader


def _resume_position(resume: dict | None, stages: list[tuple[str, int]]):
    """``(stage index, epoch in that stage, best, best metrics)`` to continue from."""
    if resume is None:
        return 0, 0, {"miou": -1.0}, {}
    names = [s for s, _ in stages]
    if resume["stage"] not in names:
        raise ValueError(f"--resume checkpoint is in stage {resume['stage']!r} but this run has stages {names}; "
                         f"use the same --encoder-epochs as the run being resumed")
    best = {"miou": float(resume.get("best_miou", -1.0))}
    return names.index(resume["stage"]), int(resume["epoch"]), best, dict(resume.get("meta", {}).get("metrics", {}))


def _plain_args(args) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
            if isinstance(v, (str, int, float, bool, list, tuple, type(None))) and not k.startswith("_")}


def _stages(args) -> list[tuple[str, int]]:
    """``[(stage, epochs)]``: optional encoder stage, then the full network."""
    out = [("encoder", args.encoder_epochs)] if args.encoder_epochs > 0 else []
    return out + [("full", args.epochs)]


def _validate_args(args) -> None:
    size = parse_size(args.input_size)
    if args.crop_size:
        crop = parse_size(args.crop_size, "--crop-size")
        if crop[0] > size[0] or crop[1] > size[1]:
            raise ValueError(f"--crop-size {args.crop_size} must fit in --input-size {args.input_size}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 1")
    if args.encoder_epochs < 0:
        raise ValueError(f"--encoder-epochs {args.encoder_epochs} must be >= 0 (0: single stage)")
    if args.workers < 0:
        raise ValueError(f"--workers {args.workers} must be >= 0")
    if args.lr <= 0:
        raise ValueError(f"--lr {args.lr} must be > 0")
    if args.bf16 and args.no_amp:
        raise ValueError("--bf16 and --no-amp both set: --bf16 is mixed precision. Pass one of them")
    if args.init_weights and args.resume:
        raise ValueError("--init-weights and --resume both set: --resume continues a run (weights included); "
                         "--init-weights starts a new one. Pass one of them")


def main(args, defaults: dict[str, Any] | None = None) -> dict:
    """Train; returns the best validation metrics (an empty dict without validation).

    ``defaults``: the argument parser's defaults, so that the recorded command names only the
    options that differ (:func:`esnet_ros.training.run_files.command_line`).
    """
    _validate_args(args)
    rank, world, local_rank, device = init_distributed(args.device)
    is_main = rank == 0
    if device.type == "cpu":
        threads = args.threads or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world)))
        torch.set_num_threads(threads)
        # Denormal floats (tiny gradients and Adam moments late in training) take x86 cores off
        # their fast path: a fine-tuning step here went from 1.5 s to 0.7 s with them flushed.
        torch.set_flush_denormal(True)
    torch.manual_seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    out = pathlib.Path(args.output_dir)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_args_yaml(out / "args.yaml", args)
    labels = build_labels(args.data, args.labels)
    train_set = build_dataset(args, args.train_split, labels, train=True)
    val_set = build_dataset(args, args.val_split, labels, train=False) if args.val_split else None
    weights = class_weights(args, train_set)
    if is_main:
        log.info("train: %d images, val: %d images, %d classes (%s), device %s, world size %d",
                 len(train_set), len(val_set) if val_set else 0, labels.num_classes, labels.name, device, world)
        if weights is not None:
            log.info("class weights: %s", ", ".join(f"{n}={w:.2f}" for n, w in zip(labels.names, weights.tolist())))

    model = ESNet(labels.num_classes, encoder_head=args.encoder_epochs > 0).to(device)
    resume = load_resume(args.resume, labels.num_classes) if args.resume else None
    if resume is not None:
        if resume["encoder_head"] != (model.encoder_output_conv is not None):
            model = ESNet(labels.num_classes, encoder_head=resume["encoder_head"]).to(device)
        model.load_state_dict(resume["model"])
    init_meta: dict[str, Any] = {}
    if args.init_weights:
        init_meta = init_from(model, args.init_weights, labels)
        if is_main:
            log.info("initialized from %s", args.init_weights)
    amp_dtype, channels_last = _precision(args, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=model.encoder_output_conv is not None,
        )
    criterion = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None,
                                    ignore_index=labels.ignore_index)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    train_loader, val_loader = build_loaders(args, train_set, val_set, rank, world, device)
    meta_base = dict(labels=labels, input_size=parse_size(args.input_size),
                     dataset=args.dataset_name or (labels.name if labels.name != "cityscapes" else "cityscapes"),
                     normalization=DEFAULT_NORMALIZATION)
    recipe = _recipe(args, labels, weights, world, amp_dtype, defaults)
    history = resume.get("meta", {}) if resume is not None else init_meta
    if history:  # keep the history: every command that trained these weights, in order
        before = history.get("recipe", {})
        recipe["commands"] = list(before.get("commands") or [before.get("command", "?")]) + [recipe["command"]]
    writer = None
    if is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(out / "tb"))

    stages = _stages(args)
    start_stage, start_epoch, best, best_metrics = _resume_position(resume, stages)
    if resume is not None and is_main:
        log.info("resuming %s at stage %s, epoch %d", args.resume, resume["stage"], start_epoch)

    global_epoch = sum(n for _, n in stages[:start_stage]) + start_epoch
    started = time.perf_counter()
    for stage_index in range(start_stage, len(stages)):
        stage, epochs = stages[stage_index]
        encoder_only = stage == "encoder"
        optimizer = build_optimizer(args, model)
        scheduler = poly_scheduler(optimizer, epochs * len(train_loader), args.poly_power)
        first_epoch = 0
        if resume is not None and stage_index == start_stage:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            if scaler is not None and resume.get("scaler"):
                scaler.load_state_dict(resume["scaler"])
            first_epoch = start_epoch
        for epoch in range(first_epoch, epochs):
            t0 = time.perf_counter()
            if isinstance(train_loader.sampler, torch.utils.data.distributed.DistributedSampler):
                train_loader.sampler.set_epoch(global_epoch)
            loss = train_one_epoch(model, criterion, optimizer, scheduler, train_loader, device, epoch,
                                   encoder_only=encoder_only, scaler=scaler, amp_dtype=amp_dtype,
                                   channels_last=channels_last, print_freq=args.print_freq if is_main else 0,
                                   progress=is_main and sys.stderr.isatty(), writer=writer,
                                   global_step=global_epoch * len(train_loader))
            row = {"epoch": global_epoch, "stage": stage, "train_loss": f"{loss:.5f}",
                   "lr": f"{optimizer.param_groups[0]['lr']:.3e}"}
            last = epoch == epochs - 1
            metrics = None
            if val_loader is not None and not encoder_only and ((epoch + 1) % args.eval_every == 0 or last):
                confmat = evaluate(model, val_loader, device, ConfusionMatrix.for_labels(labels),
                                   progress=is_main and sys.stderr.isatty())
                metrics = confmat.compute()
                row.update(val_miou=f"{metrics['miou']:.5f}", val_category_miou=f"{metrics['category_miou']:.5f}",
                           val_pixel_accuracy=f"{metrics['pixel_accuracy']:.5f}")
            row["epoch_time_s"] = f"{time.perf_counter() - t0:.1f}"
            if is_main:
                _log_epoch(writer, row, metrics, global_epoch, loss)
                append_csv(out / "metrics.csv", row)
                plot_training_curve(out / "metrics.csv", out / "training_curve.png")
                meta_metrics = _meta_metrics(metrics, split=args.val_split, epoch=global_epoch,
                                             elapsed=time.perf_counter() - started)
                if metrics is not None and metrics["miou"] > best["miou"]:
                    best, best_metrics = {"miou": metrics["miou"]}, meta_metrics
                    save_checkpoint(out / "best.safetensors", model,
                                    make_metadata(**meta_base, recipe=recipe, metrics=best_metrics))
                if not encoder_only:
                    save_checkpoint(out / "last.safetensors", model,
                                    make_metadata(**meta_base, recipe=recipe, metrics=meta_metrics or {}))
                save_resume(out / "checkpoint.pth", model=model, optimizer=optimizer, scheduler=scheduler,
                            scaler=scaler, epoch=epoch + 1, stage=stage, best_miou=best["miou"],
                            meta=make_metadata(**meta_base, recipe=recipe, metrics=best_metrics),
                            args_dict=_plain_args(args))
            barrier()
            global_epoch += 1
    if writer is not None:
        writer.close()
    if is_main:
        log.info("done in %.1f min; best val mIoU %s", (time.perf_counter() - started) / 60,
                 f"{100 * best['miou']:.2f}%" if best["miou"] >= 0 else "n/a")
    return best_metrics


def _meta_metrics(metrics: dict | None, *, split: str, epoch: int, elapsed: float) -> dict:
    if metrics is None:
        return {}
    return {
        "split": split,
        "epoch": epoch,
        "miou": round(metrics["miou"], 5),
        "category_miou": round(metrics["category_miou"], 5) if not math.isnan(metrics["category_miou"]) else None,
        "pixel_accuracy": round(metrics["pixel_accuracy"], 5),
        "pixels": int(metrics["pixels"]),
        "per_class_iou": {k: (round(v, 5) if not math.isnan(v) else None) for k, v in metrics["per_class_iou"].items()},
        "train_time_s": round(elapsed, 1),
        "evaluated_at": "full label resolution",
    }


def _log_epoch(writer, row: dict, metrics: dict | None, epoch: int, loss: float) -> None:
    msg = f"epoch {epoch} [{row['stage']}] loss {loss:.4f} lr {row['lr']}"
    if metrics is not None:
        msg += (f" | val mIoU {100 * metrics['miou']:.2f}% category {100 * metrics['category_miou']:.2f}% "
                f"pixel acc {100 * metrics['pixel_accuracy']:.2f}%")
    log.info(msg + f" ({row['epoch_time_s']} s)")
    if writer is None:
        return
    writer.add_scalar("train/loss", loss, epoch)
    writer.add_scalar("train/lr", float(row["lr"]), epoch)
    if metrics is not None:
        writer.add_scalar("val/miou", metrics["miou"], epoch)
        writer.add_scalar("val/category_miou", metrics["category_miou"], epoch)
        writer.add_scalar("val/pixel_accuracy", metrics["pixel_accuracy"], epoch)
    writer.flush()
