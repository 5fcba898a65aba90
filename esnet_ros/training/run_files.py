"""What a training run keeps on disk: the resumable ``checkpoint.pth``, ``args.yaml``, ``metrics.csv``,
``training_curve.png`` and the command that started it (recorded in the checkpoint's recipe)."""

from __future__ import annotations

import csv
import pathlib
import shlex
import subprocess
import sys
from typing import Any

import torch
from torch import nn

from esnet_ros.core.checkpoint import ARCH, ARCH_VERSION

__all__ = [
    "RESUME_FORMAT",
    "CSV_FIELDS",
    "bare_model",
    "save_resume",
    "load_resume",
    "command_line",
    "source_commit",
    "write_args_yaml",
    "append_csv",
    "plot_training_curve",
]

RESUME_FORMAT = "esnet_ros.train_state"
CSV_FIELDS = (
    "epoch",
    "stage",
    "train_loss",
    "lr",
    "val_miou",
    "val_category_miou",
    "val_pixel_accuracy",
    "epoch_time_s",
)


def bare_model(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def save_resume(
    path: pathlib.Path,
    *,
    model,
    optimizer,
    scheduler,
    scaler,
    epoch: int,
    stage: str,
    best_miou: float,
    meta: dict,
    args_dict: dict,
) -> None:
    """Everything ``--resume`` needs, as plain containers (loads with ``torch.load(weights_only=True)``)."""
    state = {
        "format": RESUME_FORMAT,
        "arch": ARCH,
        "arch_version": ARCH_VERSION,
        "num_classes": bare_model(model).num_classes,
        "encoder_head": bare_model(model).encoder_output_conv is not None,
        "model": bare_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": int(epoch),
        "stage": stage,
        "best_miou": float(best_miou),
        "meta": meta,
        "args": args_dict,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_resume(path: str | pathlib.Path, num_classes: int) -> dict[str, Any]:
    """Read a ``checkpoint.pth`` and check it is an ESNet training state with ``num_classes`` classes."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {path} does not exist; pass OUTPUT_DIR/checkpoint.pth of an earlier run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file at all (e.g. a .safetensors): re-raised with the fix
        raise ValueError(
            f"--resume {path} is not an esnet train checkpoint (unreadable by torch.load: "
            f"{type(exc).__name__}); pass OUTPUT_DIR/checkpoint.pth of an earlier esnet train run, "
            f"not .safetensors weights"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        keys = list(state)[:4] if isinstance(state, dict) else type(state).__name__
        hint = " (.safetensors files hold inference weights only)" if path.suffix == ".safetensors" else ""
        raise ValueError(
            f"--resume {path} is not an esnet train checkpoint (found {keys}){hint}; "
            f"pass OUTPUT_DIR/checkpoint.pth of an earlier esnet train run"
        )
    if state.get("arch") != ARCH or int(state.get("arch_version", -1)) != ARCH_VERSION:
        raise ValueError(
            f"--resume {path} is a checkpoint of architecture {state.get('arch')!r} v{state.get('arch_version')}, "
            f"but this run trains {ARCH!r} v{ARCH_VERSION}; start a new run or resume a checkpoint of this architecture"
        )
    if int(state.get("num_classes", -1)) != num_classes:
        raise ValueError(
            f"--resume {path} has {state.get('num_classes')} classes but this dataset has {num_classes}; "
            f"resume with the same labels, or start a new run"
        )
    return state


def command_line(args, defaults: dict[str, Any] | None = None) -> str:
    """The command that started this run: from ``sys.argv`` under the esnet CLI, else rebuilt from ``args``
    (options equal to ``defaults``, the parser's defaults, are left out; all are kept without them)."""
    argv = list(sys.argv)
    launcher = pathlib.Path(argv[0]).name if argv else ""
    if "train" in argv and launcher in ("esnet", "cli.py", "__main__.py", "train.py"):
        return shlex.join(["esnet", *argv[argv.index("train") :]])
    words = ["esnet", "train"]
    for key, value in vars(args).items():
        if key.startswith("_") or (
            defaults is not None
            and (key not in defaults or (value == defaults[key] and key not in ("data", "output_dir")))
        ):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        elif value is not False and value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def source_commit() -> str | None:
    """The git commit of the esnet_ros sources that run (``-dirty`` with uncommitted changes), or None
    outside a git checkout (an installed package): recorded in each model's recipe."""
    root = pathlib.Path(__file__).resolve().parents[2]
    if not (root / "package.xml").is_file() or not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def write_args_yaml(path: pathlib.Path, args) -> None:
    import yaml

    doc = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in vars(args).items()
        if not k.startswith("_") and k not in ("func",)
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=True))


def append_csv(path: pathlib.Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in CSV_FIELDS})


def plot_training_curve(csv_path: pathlib.Path, png_path: pathlib.Path) -> None:
    """Loss and val mIoU per epoch from ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    loss = [float(r["train_loss"]) for r in rows]
    val = [(int(r["epoch"]), float(r["val_miou"])) for r in rows if r["val_miou"] not in ("", "nan")]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(epochs, loss, "-o", ms=3, color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    if val:
        ax2 = ax.twinx()
        ax2.plot([e for e, _ in val], [100 * v for _, v in val], "-s", ms=3, color="tab:green", label="val mIoU")
        ax2.set_ylabel("val mIoU (%)", color="tab:green")
        ax2.set_ylim(0, 100)
    ax.set_title("ESNet training")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
