"""Synthetic scenes, part 5: datasets on disk (the Cityscapes layout) and scene pairs (for a camera or a bag)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import cv2
import numpy as np

from esnet_ros.data.synth.render import draw_scene, scene_rng
from esnet_ros.data.synth.scene import label_ids_to_train_ids

TRAIN_CITIES = ("synthbourg", "synthhausen", "synthstadt")
VAL_CITIES = ("synthville",)


def scene_paths(root: pathlib.Path, split: str, city: str, index: int) -> dict[str, pathlib.Path]:
    """Paths of scene ``index`` in the Cityscapes layout: image, labelIds, labelTrainIds, instanceIds."""
    stem = f"{city}_{index:06d}_000019"
    gt = root / "gtFine" / split / city
    return {
        "image": root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
        **{kind: gt / f"{stem}_gtFine_{kind}.png" for kind in ("labelIds", "labelTrainIds", "instanceIds")},
    }


def write_dataset(
    out, *, train: int, val: int, seed: int, size: tuple[int, int] = (2048, 1024), progress: bool = True
) -> dict[str, int]:
    """Write ``train`` + ``val`` scenes under ``out`` in the Cityscapes layout; returns counts per split."""
    root = pathlib.Path(out)
    width, height = _checked_size(size)
    counts = {}
    for split, n, cities in (("train", train, TRAIN_CITIES), ("val", val, VAL_CITIES)):
        if n < 0:
            raise ValueError(f"--{split} {n}: the number of scenes must be >= 0")
        iterator = range(n)
        if progress and n:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc=f"synth {split}", unit="scene")
        for i in iterator:
            city = cities[i % len(cities)]
            image, canvas = draw_scene(scene_rng(seed, split, i), width, height)
            paths = scene_paths(root, split, city, i)
            arrays = {
                "image": image[..., ::-1],
                "labelIds": canvas.label,
                "labelTrainIds": label_ids_to_train_ids(canvas.label),
                "instanceIds": canvas.instance_ids(),
            }
            for kind, path in paths.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(path), arrays[kind]):
                    raise FileNotFoundError(f"could not write {path}; check that --out {out} is writable")
        counts[split] = n
    return counts


def scene_pairs(
    count: int, *, seed: int = 0, size: tuple[int, int] = (1280, 720), split: str = "val", color_order: str = "bgr"
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``count`` scenes as ``(image (H,W,3) uint8, labelIds (H,W) uint8)`` pairs, one at a time.

    Scene ``i`` is scene ``i`` of ``split`` in a dataset written with ``seed`` (the same pixels as
    :func:`write_dataset`'s), so a recording made from these pairs can be scored against the files.
    ``color_order`` ``"bgr"`` (default) suits a ``bgr8`` ROS image; labels are Cityscapes labelIds
    (map them with :func:`label_ids_to_train_ids` for training ids).
    """
    if count < 0:
        raise ValueError(f"count={count}: the number of scenes must be >= 0")
    if color_order not in ("rgb", "bgr"):
        raise ValueError(f"color_order={color_order!r} must be one of: rgb, bgr")
    width, height = _checked_size(size)
    for i in range(count):
        image, canvas = draw_scene(scene_rng(seed, split, i), width, height)
        if color_order == "bgr":
            image = np.ascontiguousarray(image[..., ::-1])
        yield image, canvas.label


def write_pairs(
    out, count: int, *, seed: int = 0, size: tuple[int, int] = (1280, 720), split: str = "val"
) -> list[dict[str, pathlib.Path]]:
    """Write :func:`scene_pairs` to ``out/images/SPLIT/NNNNNN.png`` (BGR PNG) and ``out/labels/SPLIT/NNNNNN.png``
    (labelIds), the images/labels layout :mod:`esnet_ros.data.datasets` reads; returns each scene's paths."""
    root = pathlib.Path(out)
    written = []
    for i, (image, label_ids) in enumerate(scene_pairs(count, seed=seed, size=size, split=split)):
        paths = {
            "image": root / "images" / split / f"{i:06d}.png",
            "labelIds": root / "labels" / split / f"{i:06d}.png",
        }
        for kind, array in (("image", image), ("labelIds", label_ids)):
            paths[kind].parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(paths[kind]), array):
                raise FileNotFoundError(f"could not write {paths[kind]}; check that {out} is writable")
        written.append(paths)
    return written


def _checked_size(size) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width < 16 or height < 16:
        raise ValueError(f"size {width}x{height} is too small; use at least 16x16")
    return width, height
