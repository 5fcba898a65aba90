"""ModelMeta: the typed checkpoint metadata, its file form, and the one set of defaults for old files."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from esnet_ros import ModelMeta as PublicModelMeta
from esnet_ros.core.checkpoint import load_checkpoint, make_metadata
from esnet_ros.core.labels import LabelSet, cityscapes
from esnet_ros.core.metadata import DEFAULT_NORMALIZATION, META_KEY, ModelMeta, Normalization
from esnet_ros.core.model import ESNet, parse_size
from esnet_ros.data.transforms import ToTensor, eval_transforms

TOY = LabelSet("toy", ("a", "b"), ((1, 2, 3), (4, 5, 6)))


def test_public_name_and_roundtrip():
    assert PublicModelMeta is ModelMeta
    meta = make_metadata(
        TOY,
        input_size=(64, 32),
        recipe={"lr": 1e-3},
        metrics={"miou": 0.5},
        normalization={"scale": 1.0, "mean": [1, 2, 3], "std": [2, 2, 2], "color_order": "BGR"},
    )
    d = meta.to_dict()
    assert d["input_size"] == [64, 32] and d["num_classes"] == 2 and d["class_names"] == ["a", "b"]
    assert d["normalization"] == {"scale": 1.0, "mean": [1.0, 2.0, 3.0], "std": [2.0, 2.0, 2.0], "color_order": "bgr"}
    back = ModelMeta.from_dict(json.loads(json.dumps(d)))
    assert back == meta and back.to_dict() == d
    assert back.normalization.color_order == "bgr" and back.num_classes == 2


def test_old_files_load_with_the_documented_defaults(tmp_path):
    """A checkpoint written before input_size/normalization/recipe existed gets the defaults from one place."""
    old = {
        k: v
        for k, v in make_metadata(cityscapes()).to_dict().items()
        if k not in ("input_size", "normalization", "recipe", "metrics", "license")
    }
    old["made_by"] = "an older esnet_ros"
    path = tmp_path / "old.safetensors"
    save_file(
        {k: v.contiguous() for k, v in ESNet(19).state_dict().items() if not k.startswith("encoder_output")},
        str(path),
        metadata={META_KEY: json.dumps(old)},
    )
    _, meta = load_checkpoint(path)
    assert meta.input_size == (1024, 512)
    assert meta.normalization == DEFAULT_NORMALIZATION
    assert meta.normalization.scale == pytest.approx(1 / 255) and meta.normalization.color_order == "rgb"
    assert meta.recipe == {} and meta.metrics == {} and meta.license == "MIT"
    assert meta.extra == {"made_by": "an older esnet_ros"}  # unknown keys survive a load and save
    assert meta.to_dict()["made_by"] == "an older esnet_ros"


def test_bad_metadata_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="color_order='yuv' must be 'rgb' or 'bgr'"):
        Normalization(color_order="yuv")
    with pytest.raises(ValueError, match="std non-zero"):
        Normalization(std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"lacks \['color_order'\]"):
        Normalization.from_dict({"scale": 1, "mean": [0, 0, 0], "std": [1, 1, 1]})
    with pytest.raises(ValueError, match="lacks class_names/palette"):
        ModelMeta.from_dict({"input_size": [64, 32]})
    bad = make_metadata(TOY).to_dict() | {"num_classes": 3}
    with pytest.raises(ValueError, match="says 3 classes but lists 2 class names"):
        ModelMeta.from_dict(bad)


def test_normalization_gain_bias_and_apply():
    norm = Normalization(scale=1 / 255, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0), color_order="bgr")
    gain, bias = norm.gain_bias()
    np.testing.assert_allclose(gain, [2 / 255, 4 / 255, 1 / 255], rtol=1e-6)
    np.testing.assert_allclose(bias, [-1.0, -1.0, 0.0])
    rgb = torch.tensor([255, 0, 51], dtype=torch.uint8).view(3, 1, 1)  # R=255, G=0, B=51
    x = norm.apply(rgb, color_order="rgb")  # model order is BGR: (51, 0, 255)
    np.testing.assert_allclose(x.flatten().numpy(), [(51 / 255 - 0.5) / 0.5, (0 - 0.25) / 0.25, 1.0], rtol=1e-6)


def test_training_transforms_normalize_as_the_metadata_says():
    """ToTensor is built from ModelMeta.normalization, the object the engine reads too."""
    image = np.zeros((8, 16, 3), np.uint8)
    image[..., 0], image[..., 2] = 200, 100
    label = np.zeros((8, 16), np.uint8)
    default, _ = ToTensor()(image, label)
    np.testing.assert_allclose(default[:, 0, 0].numpy(), [200 / 255, 0.0, 100 / 255], rtol=1e-6)
    meta = make_metadata(
        TOY, normalization=Normalization(scale=1.0, mean=(100, 0, 0), std=(50, 1, 1), color_order="bgr")
    )
    x, y = eval_transforms((16, 8), normalization=meta.normalization)(image, label)
    np.testing.assert_allclose(x[:, 0, 0].numpy(), [0.0, 0.0, 200.0])  # B: (100-100)/50, G: 0, R: 200
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and tuple(x.shape) == (3, 8, 16)
    with pytest.raises(TypeError, match="needs a Normalization"):
        ToTensor(1 / 255)


def test_parse_size():
    assert parse_size("512x256") == (512, 256)
    with pytest.raises(ValueError, match="--input-size '512' must look like WIDTHxHEIGHT"):
        parse_size("512")
    with pytest.raises(ValueError, match=r"width=516 must be a positive multiple of 8.*try 512 or 520"):
        parse_size("516x256")
