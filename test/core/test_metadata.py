"""ModelMeta: the typed metadata, its stored form, the documented defaults for old files, and sizes."""

import json

import numpy as np
import pytest

from esnet_ros import ModelMeta as PublicModelMeta
from esnet_ros.core.checkpoint import load_checkpoint, make_metadata, save_checkpoint
from esnet_ros.core.labels import LabelSet, cityscapes
from esnet_ros.core.metadata import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_NORMALIZATION,
    META_KEY,
    ModelMeta,
    Normalization,
    as_meta,
)
from esnet_ros.core.model import ESNet
from esnet_ros.core.sizes import parse_size

TOY = LabelSet("toy", ("a", "b"), ((1, 2, 3), (4, 5, 6)))


def test_public_api_and_key():
    assert PublicModelMeta is ModelMeta and META_KEY == "esnet_ros"


def test_stored_form_round_trips():
    meta = make_metadata(TOY, input_size=(64, 32), recipe={"lr": 1e-3}, metrics={"miou": 0.5},
                         normalization=Normalization(scale=1.0, mean=(1, 2, 3), std=(4, 5, 6), color_order="BGR"))
    stored = json.loads(json.dumps(meta.to_dict()))
    assert stored["input_size"] == [64, 32] and stored["num_classes"] == 2 and stored["class_names"] == ["a", "b"]
    assert stored["normalization"] == {"scale": 1.0, "mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0], "color_order": "bgr"}
    assert ModelMeta.from_dict(stored) == meta
    assert as_meta(stored) == meta and as_meta(meta) is meta
    with pytest.raises(TypeError, match="ModelMeta or a mapping"):
        as_meta(["not", "meta"])


def test_old_files_get_the_documented_defaults_in_one_place():
    old = {"arch": "esnet", "class_names": ["a", "b"], "palette": [[1, 2, 3], [4, 5, 6]], "dataset": "toy",
           "name": "my model"}
    meta = ModelMeta.from_dict(old)
    assert meta.input_size == DEFAULT_INPUT_SIZE == (1024, 512)
    assert meta.normalization == DEFAULT_NORMALIZATION and meta.normalization.scale == pytest.approx(1 / 255)
    assert meta.assumed_defaults == ("network input 1024x512", "normalization pixel/255 in RGB order")
    assert meta.recipe == {} and meta.metrics == {} and meta.license == "unknown"
    assert meta.extra == {"name": "my model"} and meta.to_dict()["name"] == "my model"  # unknown keys kept
    with pytest.raises(ValueError, match="no class list .* labels file"):
        ModelMeta.from_dict({"arch": "esnet", "input_size": [64, 32]})
    assert ModelMeta.from_dict({"input_size": [64, 32]}, labels=TOY).labels == TOY


def test_a_checkpoint_without_input_size_loads_with_the_default(tmp_path):
    """A checkpoint written before input_size/normalization were recorded."""
    from safetensors.torch import save_file

    stored = make_metadata(cityscapes()).to_dict()
    del stored["input_size"], stored["normalization"]
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in ESNet(19).state_dict().items()}, str(path),
              metadata={META_KEY: json.dumps(stored)})
    _, meta = load_checkpoint(path)
    assert meta.input_size == (1024, 512) and meta.normalization == DEFAULT_NORMALIZATION
    assert "network input 1024x512" in meta.assumed_defaults
    again = save_checkpoint(tmp_path / "again.safetensors", ESNet(19), meta)
    assert load_checkpoint(again)[1].input_size == (1024, 512)


def test_normalization_checks_and_affine():
    with pytest.raises(ValueError, match="color_order='rgba' must be 'rgb' or 'bgr'"):
        Normalization(color_order="rgba")
    with pytest.raises(ValueError, match="std non-zero"):
        Normalization(std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"lacks \['std'\]"):
        Normalization.from_dict({"scale": 1, "mean": [0, 0, 0], "color_order": "rgb"})
    norm = Normalization(scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    gain, bias = norm.gain_bias()
    pixel = np.array([10.0, 128.0, 255.0], np.float32)
    np.testing.assert_allclose(pixel * gain + bias, (pixel / 255 - np.array(norm.mean)) / np.array(norm.std), rtol=1e-5)


def test_metadata_types_are_checked():
    with pytest.raises(TypeError, match="labels must be a LabelSet"):
        ModelMeta(labels={"class_names": ["a"]})
    with pytest.raises(TypeError, match="normalization must be a Normalization"):
        ModelMeta(labels=TOY, normalization={"scale": 1})


def test_parse_size_once():
    assert parse_size("1024x512") == (1024, 512) and parse_size(" 512X256 ") == (512, 256)
    with pytest.raises(ValueError, match=r"--input-size '1024\*512' must look like WIDTHxHEIGHT, e.g. 1024x512"):
        parse_size("1024*512")
    with pytest.raises(ValueError, match="--crop-size height=250 must be a positive multiple of 8.*try 248 or 256"):
        parse_size("512x250", "--crop-size")
    assert parse_size("1282x721", "--size", network=False) == (1282, 721)
    with pytest.raises(ValueError, match="--size '8x8' is too small; use at least 16x16"):
        parse_size("8x8", "--size", network=False)
