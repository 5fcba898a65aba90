"""Segmentation metrics the way the Cityscapes benchmark computes them.

A :class:`ConfusionMatrix` accumulates ``(ground truth, prediction)`` pixel counts over train
ids (pixels whose ground truth is ``ignore_index`` are skipped), sums across processes with
:meth:`ConfusionMatrix.all_reduce`, and :meth:`ConfusionMatrix.compute` gives:

- ``per_class_iou``: ``TP / (TP + FP + FN)`` per class, NaN where the class has neither ground
  truth nor predictions (``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling``'s rule);
- ``miou``: the mean over the classes that are not NaN;
- ``category_miou``: the same over categories (Cityscapes' 7: flat, construction, object,
  nature, sky, human, vehicle), a category's TP counting every confusion inside the category;
- ``pixel_accuracy`` (also ``pixel_acc``, CamVid's "global accuracy"): correct / labeled pixels;
- ``per_class_acc``: each class's recall ``TP / (TP + FN)``, NaN for a class without ground truth;
  ``class_avg_acc``: their mean (CamVid's "class average accuracy").

All are fractions in 0..1.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["ConfusionMatrix", "iou_from_matrix", "save_confusion_png"]


def iou_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """Per-class IoU of a ``(C,C)`` matrix (rows: ground truth, columns: prediction); NaN if 0/0."""
    m = np.asarray(matrix, np.float64)
    tp = np.diag(m)
    denom = m.sum(0) + m.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1), np.nan)


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(sum(values) / len(values)) if values else float("nan")


class ConfusionMatrix:
    """Pixel confusion matrix over ``num_classes`` train ids.

    Args:
        num_classes: number of classes (train ids ``0..num_classes-1``).
        class_names: names for ``per_class_iou`` (default ``"0"``, ``"1"``, ...).
        categories: each class's category name (e.g. Cityscapes'), or ``None`` for no
            ``category_miou``.
        ignore_index: ground-truth value that is skipped.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        ignore_index: int = 255,
    ) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes; give one name per class")
        if categories is not None and len(categories) != num_classes:
            raise ValueError(f"{len(categories)} categories for {num_classes} classes; give one per class")
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.categories = list(categories) if categories is not None else None
        self.ignore_index = ignore_index
        self.mat = torch.zeros((num_classes, num_classes), dtype=torch.int64)

    @classmethod
    def for_labels(cls, labels) -> ConfusionMatrix:
        """From an :class:`esnet_ros.core.labels.LabelSet`."""
        return cls(labels.num_classes, labels.names, labels.categories, labels.ignore_index)

    def reset(self) -> None:
        self.mat.zero_()

    def update(self, target: torch.Tensor | np.ndarray, prediction: torch.Tensor | np.ndarray) -> None:
        """Add pixels: ``target`` and ``prediction`` hold train ids and have the same shape.

        Tensors or arrays; two ``uint8`` NumPy arrays (what a ROS monitor receives) take a histogram
        path that is fast enough to score a 1280x720 camera live (~3 ms a frame).
        """
        if target.shape != prediction.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} != prediction shape {tuple(prediction.shape)}; "
                f"upsample predictions to the label size first"
            )
        if (
            isinstance(target, np.ndarray)
            and isinstance(prediction, np.ndarray)
            and target.dtype == prediction.dtype == np.uint8
        ):
            self._update_uint8(target, prediction)
            return
        n = self.num_classes
        target = torch.as_tensor(target).reshape(-1).to(torch.int64)
        prediction = torch.as_tensor(prediction).reshape(-1).to(torch.int64)
        keep = target != self.ignore_index
        target, prediction = target[keep], prediction[keep]
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n):
            self._refuse_target(target[(target < 0) | (target >= n)].unique().tolist())
        if prediction.numel() and (int(prediction.min()) < 0 or int(prediction.max()) >= n):
            raise ValueError(f"prediction holds ids outside 0..{n - 1}")
        counts = torch.bincount((target * n + prediction).cpu(), minlength=n * n)
        self.mat += counts.reshape(n, n)

    def _update_uint8(self, target: np.ndarray, prediction: np.ndarray) -> None:
        """A 256x256 histogram of ``(target, prediction)`` byte pairs, then the same checks as tensors."""
        n = self.num_classes
        pairs = (target.astype(np.uint16) << 8) | prediction
        hist = np.bincount(pairs.ravel(), minlength=256 * 256).reshape(256, 256)
        if 0 <= self.ignore_index < 256:
            hist[self.ignore_index] = 0
        bad_rows = np.flatnonzero(hist[n:].any(axis=1)) + n
        if bad_rows.size:
            self._refuse_target(bad_rows.tolist())
        if n < 256 and hist[:, n:].any():
            raise ValueError(f"prediction holds ids outside 0..{n - 1}")
        self.mat += torch.from_numpy(hist[:n, :n].astype(np.int64))

    def _refuse_target(self, ids: list[int]) -> None:
        raise ValueError(
            f"target holds ids {sorted(set(ids))[:10]} outside 0..{self.num_classes - 1} "
            f"and not ignore_index {self.ignore_index}"
        )

    def all_reduce(self) -> None:
        """Sum the matrix over all processes (no-op unless torch.distributed is initialized)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        backend = torch.distributed.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        mat = self.mat.to(device)
        torch.distributed.all_reduce(mat)
        self.mat = mat.cpu()

    def compute(self) -> dict:
        """``miou``, ``category_miou``, ``per_class_iou``, ``per_category_iou``, ``pixel_accuracy``
        (0..1; NaN if undefined)."""
        m = self.mat.numpy().astype(np.float64)
        iou = iou_from_matrix(m)
        total = m.sum()
        gt = m.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(gt > 0, np.diag(m) / np.where(gt > 0, gt, 1), np.nan)
        pixel_acc = float(np.trace(m) / total) if total > 0 else float("nan")
        result = {
            "miou": _nanmean(iou.tolist()),
            "category_miou": float("nan"),
            "per_class_iou": {name: float(v) for name, v in zip(self.class_names, iou, strict=True)},
            "per_category_iou": {},
            "pixel_accuracy": pixel_acc,
            "pixel_acc": pixel_acc,
            "class_avg_acc": _nanmean(recall.tolist()),
            "per_class_acc": {name: float(v) for name, v in zip(self.class_names, recall, strict=True)},
            "pixels": int(total),
        }
        if self.categories is not None:
            names = list(dict.fromkeys(self.categories))
            index = np.array([names.index(c) for c in self.categories])
            onehot = np.zeros((self.num_classes, len(names)))
            onehot[np.arange(self.num_classes), index] = 1
            cat_iou = iou_from_matrix(onehot.T @ m @ onehot)
            result["per_category_iou"] = {name: float(v) for name, v in zip(names, cat_iou, strict=True)}
            result["category_miou"] = _nanmean(cat_iou.tolist())
        return result

    def __str__(self) -> str:
        r = self.compute()
        head = f"mIoU {100 * r['miou']:.2f}"
        if self.categories is not None:
            head += f"  category mIoU {100 * r['category_miou']:.2f}"
        head += f"  class avg accuracy {100 * r['class_avg_acc']:.2f}  pixel accuracy {100 * r['pixel_accuracy']:.2f}"
        lines = [head, f"  {'class':>14s} {'IoU':>6s} {'acc':>6s}"]
        for name in self.class_names:
            iou, acc = r["per_class_iou"][name], r["per_class_acc"][name]
            if not math.isnan(iou):
                lines.append(
                    f"  {name:>14s} {100 * iou:6.2f} " + ("     -" if math.isnan(acc) else f"{100 * acc:6.2f}")
                )
        return "\n".join(lines)


def save_confusion_png(matrix: ConfusionMatrix, path: str | pathlib.Path, title: str = "") -> pathlib.Path:
    """Row-normalized confusion matrix as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = matrix.mat.numpy().astype(np.float64)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    n = matrix.num_classes
    size = max(5.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=100)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), matrix.class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), matrix.class_names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if norm[i, j] >= 0.005:
                    ax.text(
                        j,
                        i,
                        f"{100 * norm[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    r = matrix.compute()
    ax.set_title(f"{title}  mIoU {100 * r['miou']:.1f}%".strip(), fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of ground-truth row")
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
