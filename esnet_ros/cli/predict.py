"""``esnet predict``: write a prediction PNG for every image of a folder (or one image).

    esnet predict --weights W --input DIR --output DIR [--format labelIds|trainIds|color|overlay]

Formats (all at the input image's full resolution):

- ``labelIds``: single-channel raw dataset ids (Cityscapes labelIds for Cityscapes models), the
  files ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`` consumes;
- ``trainIds``: single-channel class indices as the network predicts them;
- ``color``: the class palette (RGB colors, written as a normal color PNG);
- ``overlay``: the palette blended over the image (``--alpha``).

Output names keep the input's sub-folders; a Cityscapes ``<stem>_leftImg8bit.png`` becomes
``<stem>_<format>.png`` (which the official evaluation matches by ``<city>_<seq>_<frame>*.png``).
The labels come from the node's engine (:class:`esnet_ros.inference.segmenter.Segmenter`) with the
same ``--upsample`` (default ``nearest``, as the node's ``upsample`` parameter): they are what
``/esnet/labels`` carries for the same image, and what ``esnet evaluate`` scores.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

import cv2
import numpy as np

from esnet_ros.cli.engine_options import add_engine_arguments, build_segmenter
from esnet_ros.core.image_files import find_images
from esnet_ros.data.datasets import read_image

__all__ = ["add_arguments", "run", "FORMATS", "output_path", "render"]

log = logging.getLogger(__name__)
FORMATS = ("labelIds", "trainIds", "color", "overlay")


def output_path(image: pathlib.Path, root: pathlib.Path, out: pathlib.Path, fmt: str) -> pathlib.Path:
    stem = image.stem
    if stem.endswith("_leftImg8bit"):
        stem = stem[: -len("_leftImg8bit")]
    return out / image.parent.relative_to(root) / f"{stem}_{fmt}.png"


def render(train_ids: np.ndarray, image_rgb: np.ndarray, labels, fmt: str, alpha: float = 0.5) -> np.ndarray:
    """The array to write for ``fmt``: ``(H,W)`` uint8 ids, or ``(H,W,3)`` uint8 **BGR** for OpenCV."""
    if fmt == "trainIds":
        return train_ids
    if fmt == "labelIds":
        return labels.train_to_raw_lut()[train_ids]
    color = labels.palette()[train_ids]
    if fmt == "overlay":
        color = np.round(image_rgb * (1.0 - alpha) + color * alpha).astype(np.uint8)
    return np.ascontiguousarray(color[..., ::-1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="folder of images (searched recursively) or one image")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--format", default="labelIds", choices=FORMATS, help="what to write (default labelIds)")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the class colors, 0..1")
    add_engine_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise ValueError(f"--format {args.format!r} must be one of: {', '.join(FORMATS)}")
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha {args.alpha} must be within 0..1")
    root, images = find_images(args.input, what="--input")
    segmenter = build_segmenter(args)
    out = pathlib.Path(args.output)
    from tqdm import tqdm  # progress bar: only when predicting, and only on a terminal

    for image_path in tqdm(images, desc="predict", unit="image", disable=not sys.stderr.isatty()):
        image = read_image(image_path)
        train_ids = segmenter(image, "rgb", upsample=args.upsample).labels
        array = render(train_ids, image, segmenter.labels, args.format, args.alpha)
        path = output_path(image_path, root, out, args.format)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), array):
            raise FileNotFoundError(f"could not write {path}; check that --output {out} is writable")
    log.info("wrote %d %s PNGs to %s", len(images), args.format, out)
    return 0
