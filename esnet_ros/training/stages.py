"""The stages of a training run and their epochs: train, validate, and write the run's files.

Stages (:func:`stage_plan`): with ``--encoder-epochs`` first the encoder with its 1x1 head against 1/8
labels, then the whole network. Each stage gets a fresh Adam and poly schedule over its own epochs (the
stage a run resumes in reloads both from ``checkpoint.pth``). After every epoch rank 0 logs a line and
TensorBoard scalars, appends to ``metrics.csv``, redraws ``training_curve.png`` and writes
``best.safetensors`` (when val mIoU improves), ``last.safetensors`` (full network only) and ``checkpoint.pth``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
import sys
import time
from typing import Any

import torch
from torch import nn

from esnet_ros.core.checkpoint import make_metadata, save_checkpoint
from esnet_ros.core.labels import LabelSet
from esnet_ros.training.distributed import barrier
from esnet_ros.training.loop import build_optimizer, evaluate, poly_scheduler, train_one_epoch
from esnet_ros.training.metrics import ConfusionMatrix
from esnet_ros.training.run_files import append_csv, plot_training_curve, save_resume

__all__ = ["TrainingRun", "stage_plan", "resume_position", "run_stages", "run_stage", "run_epoch"]

# One logger name for the whole training log, whichever of its modules writes the line.
log = logging.getLogger("esnet_ros.training.train")


@dataclasses.dataclass
class TrainingRun:
    """What the stages and epochs of one run share, and its progress (best val mIoU, epochs done)."""

    args: Any
    model: nn.Module
    criterion: nn.Module
    device: torch.device
    labels: LabelSet
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader | None
    out: pathlib.Path
    is_main: bool
    meta_base: dict[str, Any]  # make_metadata's arguments besides recipe and metrics
    recipe: dict[str, Any]
    scaler: torch.amp.GradScaler | None = None  # float16 AMP only
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    writer: Any = None  # TensorBoard SummaryWriter (rank 0)
    best_miou: float = -1.0
    best_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    global_epoch: int = 0  # epochs done over all stages
    started: float = 0.0  # time.perf_counter() at the first epoch

    @property
    def progress(self) -> bool:
        """Progress bars: rank 0 on a terminal."""
        return self.is_main and sys.stderr.isatty()


def stage_plan(args) -> list[tuple[str, int]]:
    """``[(stage, epochs)]``: optional encoder stage, then the full network."""
    out = [("encoder", args.encoder_epochs)] if args.encoder_epochs > 0 else []
    return out + [("full", args.epochs)]


def resume_position(resume: dict | None, stages: list[tuple[str, int]]):
    """``(stage index, epoch in that stage, best val mIoU, best metrics)`` to continue from."""
    if resume is None:
        return 0, 0, -1.0, {}
    names = [s for s, _ in stages]
    if resume["stage"] not in names:
        raise ValueError(
            f"--resume checkpoint is in stage {resume['stage']!r} but this run has stages {names}; "
            f"use the same --encoder-epochs as the run being resumed"
        )
    best_miou = float(resume.get("best_miou", -1.0))
    return (
        names.index(resume["stage"]),
        int(resume["epoch"]),
        best_miou,
        dict(resume.get("meta", {}).get("metrics", {})),
    )


def run_stages(run: TrainingRun, resume: dict | None) -> dict:
    """Every stage, from where ``resume`` stopped (else from the start); returns the best val metrics."""
    stages = stage_plan(run.args)
    start_stage, start_epoch, run.best_miou, run.best_metrics = resume_position(resume, stages)
    if resume is not None and run.is_main:
        log.info("resuming %s at stage %s, epoch %d", run.args.resume, resume["stage"], start_epoch)
    run.global_epoch = sum(n for _, n in stages[:start_stage]) + start_epoch
    run.started = time.perf_counter()
    for stage_index in range(start_stage, len(stages)):
        stage, epochs = stages[stage_index]
        if resume is not None and stage_index == start_stage:
            run_stage(run, stage, epochs, resume=resume, first_epoch=start_epoch)
        else:
            run_stage(run, stage, epochs)
    if run.writer is not None:
        run.writer.close()
    if run.is_main:
        log.info(
            "done in %.1f min; best val mIoU %s",
            (time.perf_counter() - run.started) / 60,
            f"{100 * run.best_miou:.2f}%" if run.best_miou >= 0 else "n/a",
        )
    return run.best_metrics


def run_stage(run: TrainingRun, stage: str, epochs: int, *, resume: dict | None = None, first_epoch: int = 0) -> None:
    """One stage: a new optimizer and poly schedule over its ``epochs`` (their state from ``resume``)."""
    optimizer = build_optimizer(run.args, run.model)
    scheduler = poly_scheduler(optimizer, epochs * len(run.train_loader), run.args.poly_power)
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if run.scaler is not None and resume.get("scaler"):
            run.scaler.load_state_dict(resume["scaler"])
    for epoch in range(first_epoch, epochs):
        run_epoch(run, stage, epoch, epochs, optimizer, scheduler)
        barrier()
        run.global_epoch += 1


def run_epoch(run: TrainingRun, stage: str, epoch: int, epochs: int, optimizer, scheduler) -> None:
    """Train one epoch, validate when due (not in the encoder stage), and write the epoch's files (rank 0)."""
    t0 = time.perf_counter()
    loader = run.train_loader
    if isinstance(loader.sampler, torch.utils.data.distributed.DistributedSampler):
        loader.sampler.set_epoch(run.global_epoch)
    encoder_only = stage == "encoder"
    loss = train_one_epoch(
        run.model,
        run.criterion,
        optimizer,
        scheduler,
        loader,
        run.device,
        epoch,
        encoder_only=encoder_only,
        scaler=run.scaler,
        amp_dtype=run.amp_dtype,
        channels_last=run.channels_last,
        print_freq=run.args.print_freq if run.is_main else 0,
        progress=run.progress,
        writer=run.writer,
        global_step=run.global_epoch * len(loader),
    )
    row = {
        "epoch": run.global_epoch,
        "stage": stage,
        "train_loss": f"{loss:.5f}",
        "lr": f"{optimizer.param_groups[0]['lr']:.3e}",
    }
    last = epoch == epochs - 1
    metrics = None
    if run.val_loader is not None and not encoder_only and ((epoch + 1) % run.args.eval_every == 0 or last):
        confmat = evaluate(
            run.model, run.val_loader, run.device, ConfusionMatrix.for_labels(run.labels), progress=run.progress
        )
        metrics = confmat.compute()
        row.update(
            val_miou=f"{metrics['miou']:.5f}",
            val_category_miou=f"{metrics['category_miou']:.5f}",
            val_pixel_accuracy=f"{metrics['pixel_accuracy']:.5f}",
        )
    row["epoch_time_s"] = f"{time.perf_counter() - t0:.1f}"
    if run.is_main:
        _log_epoch(run.writer, row, metrics, run.global_epoch, loss)
        append_csv(run.out / "metrics.csv", row)
        plot_training_curve(run.out / "metrics.csv", run.out / "training_curve.png")
        write_checkpoints(run, stage, epoch, metrics, optimizer, scheduler)


def write_checkpoints(run: TrainingRun, stage: str, epoch: int, metrics: dict | None, optimizer, scheduler) -> None:
    """``best.safetensors`` when val mIoU improves, ``last.safetensors`` (full network), ``checkpoint.pth``."""
    meta_metrics = _meta_metrics(
        metrics, split=run.args.val_split, epoch=run.global_epoch, elapsed=time.perf_counter() - run.started
    )
    if metrics is not None and metrics["miou"] > run.best_miou:
        run.best_miou, run.best_metrics = metrics["miou"], meta_metrics
        save_checkpoint(
            run.out / "best.safetensors",
            run.model,
            make_metadata(**run.meta_base, recipe=run.recipe, metrics=run.best_metrics),
        )
    if stage != "encoder":
        save_checkpoint(
            run.out / "last.safetensors",
            run.model,
            make_metadata(**run.meta_base, recipe=run.recipe, metrics=meta_metrics or {}),
        )
    save_resume(
        run.out / "checkpoint.pth",
        model=run.model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=run.scaler,
        epoch=epoch + 1,
        stage=stage,
        best_miou=run.best_miou,
        meta=make_metadata(**run.meta_base, recipe=run.recipe, metrics=run.best_metrics).to_dict(),
        args_dict=_plain_args(run.args),
    )


def _plain_args(args) -> dict:
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in vars(args).items()
        if isinstance(v, (str, int, float, bool, list, tuple, type(None))) and not k.startswith("_")
    }


def _meta_metrics(metrics: dict | None, *, split: str, epoch: int, elapsed: float) -> dict:
    if metrics is None:
        return {}
    return {
        "split": split,
        "epoch": epoch,
        "miou": round(metrics["miou"], 5),
        "category_miou": round(metrics["category_miou"], 5) if not math.isnan(metrics["category_miou"]) else None,
        "pixel_accuracy": round(metrics["pixel_accuracy"], 5),
        "class_avg_acc": round(metrics["class_avg_acc"], 5),
        "pixels": int(metrics["pixels"]),
        "per_class_iou": {k: (round(v, 5) if not math.isnan(v) else None) for k, v in metrics["per_class_iou"].items()},
        "train_time_s": round(elapsed, 1),
        "evaluated_at": "full label resolution",
    }


def _log_epoch(writer, row: dict, metrics: dict | None, epoch: int, loss: float) -> None:
    msg = f"epoch {epoch} [{row['stage']}] loss {loss:.4f} lr {row['lr']}"
    if metrics is not None:
        msg += f" | val mIoU {100 * metrics['miou']:.2f}%"
        if not math.isnan(metrics["category_miou"]):
            msg += f" category {100 * metrics['category_miou']:.2f}%"
        msg += f" class acc {100 * metrics['class_avg_acc']:.2f}% pixel acc {100 * metrics['pixel_accuracy']:.2f}%"
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
