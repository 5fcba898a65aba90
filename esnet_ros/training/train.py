"""``esnet train``: the paper's recipe by default, in the torchvision ``references/segmentation`` style.

Recipe (Wang et al. 2019, section 4.2, and the ERFNet lineage): Adam (lr 5e-4, betas 0.9/0.999,
eps 1e-8, weight decay 1e-4), poly learning rate (power 0.9, stepped every iteration), 1024x512
input (images bilinear, labels nearest), random horizontal flips and small translations,
class-weighted cross-entropy with ENet weights ``1/ln(1.10 + p_c)`` from the training labels,
ignore label 255, and optionally two stages (``--encoder-epochs``: the encoder with its 1x1 head
against 1/8 labels first, then the whole network).

Run management (:mod:`esnet_ros.training.run_files`): ``OUTPUT/checkpoint.pth`` resumes everything
(model, optimizer, scheduler, epoch; ``--resume``), ``best.safetensors`` is the best model by val mIoU
and ``last.safetensors`` the latest (both with the full checkpoint metadata), ``args.yaml``,
``metrics.csv``, ``training_curve.png`` and TensorBoard scalars under ``tb/``.

Distributed (:mod:`esnet_ros.training.distributed`): launch with
``torchrun --nproc_per_node N -m esnet_ros.cli train ...``; RANK, WORLD_SIZE and LOCAL_RANK select the
process (gloo on CPU, nccl on CUDA).  AMP runs on CUDA.

This module builds a run (arguments, data, model, recipe) and holds :func:`main`;
:mod:`esnet_ros.training.stages` runs the stages and epochs and writes the run's files;
:mod:`esnet_ros.training.loop` holds one epoch of training and the validation pass.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import torch
from torch import nn

from esnet_ros.core.checkpoint import load_checkpoint
from esnet_ros.core.labels import LabelSet, camvid, cityscapes, load_labels_yaml
from esnet_ros.core.metadata import DEFAULT_NORMALIZATION, ModelMeta
from esnet_ros.core.model import ESNet, parse_size
from esnet_ros.data.datasets import SegmentationDataset, class_pixel_counts, dataset_layout, enet_class_weights
from esnet_ros.data.transforms import eval_transforms, train_transforms
from esnet_ros.inference.process_settings import training_process
from esnet_ros.training.distributed import ShardSampler, collate_eval, init_distributed
from esnet_ros.training.run_files import command_line, load_resume, source_commit, write_args_yaml
from esnet_ros.training.stages import TrainingRun, run_stages

__all__ = ["main", "build_dataset", "build_labels", "build_loaders", "build_model"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def build_labels(data: str | pathlib.Path, labels_yaml: str | None) -> LabelSet:
    """The class list: ``labels_yaml``, else ``DATA/labels.yaml`` for a custom layout, CamVid's built-in
    table for the CamVid layout, else Cityscapes."""
    if labels_yaml:
        return load_labels_yaml(labels_yaml)
    data = pathlib.Path(data)
    layout = dataset_layout(data)
    if layout == "camvid":
        return camvid()
    if layout == "custom" and (data / "labels.yaml").is_file():
        return load_labels_yaml(data / "labels.yaml")
    if layout == "custom":
        raise FileNotFoundError(
            f"custom dataset {data} needs a class list: pass --labels LABELS.yaml or put labels.yaml in {data} "
            f"(format: see esnet_ros/core/labels.py)"
        )
    return cityscapes()


def build_dataset(args, split: str, labels: LabelSet, train: bool) -> SegmentationDataset:
    """The training (augmented, labels at input size) or validation (full-res labels) dataset."""
    size = parse_size(args.input_size)
    norm = _meta_base(args, labels)["normalization"]  # the normalization the checkpoints will record
    if train:
        crop = parse_size(args.crop_size, "--crop-size") if getattr(args, "crop_size", None) else None
        transforms = train_transforms(
            size,
            normalization=norm,
            flip=not args.no_flip,
            translate=args.translate,
            ignore_index=labels.ignore_index,
            crop_size=crop,
            scale_range=tuple(args.scale_range) if getattr(args, "scale_range", None) else None,
            photometric=getattr(args, "photometric", 0.0),
            degrade=getattr(args, "degrade", 0.0),
        )
    else:
        transforms = eval_transforms(
            size, normalization=norm, full_resolution_labels=not getattr(args, "val_at_input_size", False)
        )
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
        raise ValueError(
            f"--class-weights {args.class_weights!r} must be 'enet', 'none' or {n} comma-separated numbers"
        ) from None
    if len(values) != n:
        raise ValueError(f"--class-weights has {len(values)} values but the dataset has {n} classes; give {n}")
    return torch.tensor(values, dtype=torch.float32)


def build_loaders(args, train_set, val_set, rank: int, world: int, device: torch.device):
    """``(train_loader, val_loader)``: distributed sampling of the training set; validation split
    without padding so every image is scored once (``val_loader`` is ``None`` without a val set)."""
    train_sampler = (
        torch.utils.data.distributed.DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed)
        if world > 1
        else torch.utils.data.RandomSampler(train_set)
    )
    loader_kw = {
        "num_workers": args.workers,
        "pin_memory": device.type == "cuda",
        "persistent_workers": args.workers > 0,
    }
    train_loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=args.batch_size,
        sampler=train_sampler,
        drop_last=len(train_set) >= args.batch_size * world,
        **loader_kw,
    )
    val_loader = None
    if val_set is not None:
        val_loader = torch.utils.data.DataLoader(
            val_set,
            batch_size=args.batch_size,
            sampler=ShardSampler(len(val_set), rank, world),
            collate_fn=collate_eval,
            **loader_kw,
        )
    return train_loader, val_loader


def _precision(args, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, channels_last)`` for this run's device and flags."""
    if args.bf16:
        return torch.bfloat16, device.type == "cpu"
    if device.type == "cuda" and not args.no_amp:
        return torch.float16, False
    return None, False


def init_from(model: ESNet, path: str | pathlib.Path, labels: LabelSet) -> ModelMeta:
    """Copy a model file's weights into ``model``; returns the file's metadata.

    Same classes: every weight (fine-tuning). Other classes (pretraining, e.g. the synthetic
    Cityscapes-class model for CamVid): every weight but the output head's, which keeps its
    fresh initialization; the copied and skipped tensors are logged.
    """
    source, meta = load_checkpoint(path)
    if meta.num_classes == labels.num_classes:
        model.load_state_dict(source.state_dict(), strict=model.encoder_output_conv is None)
        return meta
    own = model.state_dict()
    copied = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in own if k not in copied)
    model.load_state_dict(copied, strict=False)
    log.info(
        "initialized %d of %d tensors from %s (%d classes there, %d here); new: %s",
        len(copied),
        len(own),
        path,
        meta.num_classes,
        labels.num_classes,
        ", ".join(skipped),
    )
    return meta


def _recipe(
    args,
    labels: LabelSet,
    weights: torch.Tensor | None,
    world: int,
    amp_dtype: torch.dtype | None = None,
    defaults: dict[str, Any] | None = None,
) -> dict:
    return {
        "command": command_line(args, defaults),
        "trainer": "esnet_ros.training.train",
        "optimizer": {
            "name": "Adam",
            "lr": args.lr,
            "betas": list(args.betas),
            "eps": args.eps,
            "weight_decay": args.weight_decay,
        },
        "schedule": {"name": "poly", "power": args.poly_power, "step": "iteration"},
        "epochs": args.epochs,
        "encoder_epochs": args.encoder_epochs,
        "batch_size": args.batch_size,
        "world_size": world,
        "autocast": str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else None,
        "input_size": list(parse_size(args.input_size)),
        "augmentation": {
            "hflip": not args.no_flip,
            "translate_px": args.translate,
            "crop_size": list(parse_size(args.crop_size, "--crop-size")) if args.crop_size else None,
            "scale_range": list(args.scale_range) if getattr(args, "scale_range", None) else None,
            "photometric": getattr(args, "photometric", 0.0),
            "degrade": getattr(args, "degrade", 0.0),
        },
        "loss": "cross_entropy",
        "ignore_index": labels.ignore_index,
        "class_weights": {
            "spec": str(args.class_weights),
            "enet_c": args.enet_c,
            "values": [round(float(v), 6) for v in weights] if weights is not None else None,
        },
        "data": str(args.data),
        "train_split": args.train_split,
        "val_split": args.val_split,
        "seed": args.seed,
        "commit": source_commit(),
    }


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


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
        raise ValueError(
            "--init-weights and --resume both set: --resume continues a run (weights included); "
            "--init-weights starts a new one. Pass one of them"
        )


def _set_up_process(args, rank: int, world: int, device: torch.device) -> None:
    """CPU threads (cores shared by this machine's processes), flushed denormals, seeds per rank."""
    threads = 0
    if device.type == "cpu":
        threads = args.threads or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    training_process(threads, args.seed + rank)


def _log_data(train_set, val_set, labels: LabelSet, weights: torch.Tensor | None, device, world: int) -> None:
    log.info(
        "train: %d images, val: %d images, %d classes (%s), device %s, world size %d",
        len(train_set),
        len(val_set) if val_set else 0,
        labels.num_classes,
        labels.name,
        device,
        world,
    )
    if weights is not None:
        log.info(
            "class weights: %s", ", ".join(f"{n}={w:.2f}" for n, w in zip(labels.names, weights.tolist(), strict=True))
        )


def build_model(args, labels: LabelSet, device: torch.device, is_main: bool = True):
    """``(model, resume state or None, init metadata)``: a new ESNet (with the 1x1 encoder head for two
    stages), then the weights of ``--resume`` (with that run's head) or ``--init-weights`` (fine-tuning)."""
    model = ESNet(labels.num_classes, encoder_head=args.encoder_epochs > 0).to(device)
    resume = load_resume(args.resume, labels.num_classes) if args.resume else None
    if resume is not None:
        if resume["encoder_head"] != (model.encoder_output_conv is not None):
            model = ESNet(labels.num_classes, encoder_head=resume["encoder_head"]).to(device)
        model.load_state_dict(resume["model"])
    init_meta: ModelMeta | None = None
    if args.init_weights:
        init_meta = init_from(model, args.init_weights, labels)
        if is_main:
            log.info("initialized from %s", args.init_weights)
    return model, resume, init_meta


def _place_model(model: ESNet, device: torch.device, world: int, channels_last: bool) -> nn.Module:
    """The model in its training memory layout, wrapped in DDP for more than one process."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=model.encoder_output_conv is not None,
        )
    return model


def _meta_base(args, labels: LabelSet) -> dict[str, Any]:
    """:func:`make_metadata`'s arguments besides the recipe and metrics."""
    return {
        "labels": labels,
        "input_size": parse_size(args.input_size),
        "dataset": args.dataset_name or (labels.name if labels.name != "cityscapes" else "cityscapes"),
        "normalization": DEFAULT_NORMALIZATION,
    }


def _keep_history(recipe: dict, history: ModelMeta | None) -> None:
    """Every command that trained these weights, in order: the resumed or initial file's, then this one."""
    if history is not None:
        before = history.recipe
        recipe["commands"] = list(before.get("commands") or [before.get("command", "?")]) + [recipe["command"]]


def _open_writer(out: pathlib.Path):
    from torch.utils.tensorboard import SummaryWriter  # heavy: only when training

    return SummaryWriter(log_dir=str(out / "tb"))


def main(args, defaults: dict[str, Any] | None = None) -> dict:
    """Train; returns the best validation metrics (an empty dict without validation).

    ``defaults``: the argument parser's defaults, so that the recorded command names only the
    options that differ (:func:`esnet_ros.training.run_files.command_line`).
    """
    _validate_args(args)
    rank, world, _, device = init_distributed(args.device)
    is_main = rank == 0
    _set_up_process(args, rank, world, device)
    out = pathlib.Path(args.output_dir)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_args_yaml(out / "args.yaml", args)
    labels = build_labels(args.data, args.labels)
    train_set = build_dataset(args, args.train_split, labels, train=True)
    val_set = build_dataset(args, args.val_split, labels, train=False) if args.val_split else None
    weights = class_weights(args, train_set)
    if is_main:
        _log_data(train_set, val_set, labels, weights, device, world)
    model, resume, init_meta = build_model(args, labels, device, is_main)
    amp_dtype, channels_last = _precision(args, device)
    model = _place_model(model, device, world, channels_last)
    criterion = nn.CrossEntropyLoss(
        weight=weights.to(device) if weights is not None else None, ignore_index=labels.ignore_index
    )
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    train_loader, val_loader = build_loaders(args, train_set, val_set, rank, world, device)
    recipe = _recipe(args, labels, weights, world, amp_dtype, defaults)
    _keep_history(recipe, ModelMeta.from_dict(resume["meta"]) if resume is not None else init_meta)
    run = TrainingRun(
        args=args,
        model=model,
        criterion=criterion,
        device=device,
        labels=labels,
        train_loader=train_loader,
        val_loader=val_loader,
        out=out,
        is_main=is_main,
        meta_base=_meta_base(args, labels),
        recipe=recipe,
        scaler=scaler,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
        writer=_open_writer(out) if is_main else None,
    )
    return run_stages(run, resume)
