"""Checkpoints: the authors' formats, our metadata format, and every refusal with its fix."""

import logging
import pickle

import pytest
import torch

from esnet_ros import ESNet, load_checkpoint
from esnet_ros.core.checkpoint import load_checkpoint as load_from_module
from esnet_ros.core.checkpoint import make_metadata, save_checkpoint
from esnet_ros.core.labels import LabelSet, cityscapes


@pytest.fixture(scope="module")
def fixture(reference_checkpoint):
    return torch.load(reference_checkpoint, weights_only=True)


def logits_of(model, fixture):
    with torch.no_grad():
        return model(fixture["input"])


def assert_reproduces(model, fixture):
    assert not model.training
    assert (logits_of(model, fixture) - fixture["logits"]).abs().max().item() <= 1e-5


def test_public_name_is_the_module_function():
    assert load_checkpoint is load_from_module  # esnet_ros.load_checkpoint: the top-level public API
    assert load_checkpoint.__module__ == "esnet_ros.core.checkpoint"


@pytest.mark.parametrize("layout", ["wrapped", "bare", "module_prefix", "wrapped_module_prefix"])
def test_authors_formats_reproduce_the_reference(tmp_path, fixture, layout, caplog):
    sd = fixture["state_dict"]
    if "module" in layout:
        sd = {f"module.{k}": v for k, v in sd.items()}
    obj = {"state_dict": sd} if layout.startswith("wrapped") else sd
    path = tmp_path / "authors.pth"
    torch.save(obj, path)
    with caplog.at_level(logging.WARNING, logger="esnet_ros.core.checkpoint"):
        model, meta = load_checkpoint(path)
    assert_reproduces(model, fixture)
    assert meta.class_names == list(cityscapes().names)
    assert meta.normalization.scale == pytest.approx(1 / 255)
    assert meta.normalization.color_order == "rgb"
    assert "Cityscapes 19 classes" in " ".join(meta.assumed_defaults)
    assert "assumed" in caplog.text and "pixel/255" in caplog.text


def test_our_format_roundtrips_weights_and_metadata(tmp_path, fixture):
    model = ESNet(19)
    sd = {k: v for k, v in fixture["state_dict"].items() if not k.startswith("encoder_output_conv")}
    model.load_state_dict(sd)
    meta = make_metadata(
        cityscapes(),
        input_size=(512, 256),
        dataset="synthetic",
        recipe={"epochs": 3, "lr": 5e-4},
        metrics={"val_miou": 0.5},
    )
    path = save_checkpoint(tmp_path / "ours.safetensors", model, meta)
    loaded, got = load_checkpoint(path)
    assert_reproduces(loaded, fixture)
    stored = got.to_dict()
    for key in (
        "arch",
        "arch_version",
        "num_classes",
        "class_names",
        "palette",
        "input_size",
        "normalization",
        "dataset",
        "recipe",
        "metrics",
        "license",
    ):
        assert key in stored, key
    assert stored["input_size"] == [512, 256] and stored["metrics"]["val_miou"] == 0.5
    assert stored["arch"] == "esnet" and "assumed_defaults" not in stored
    assert got.input_size == (512, 256) and got.metrics == {"val_miou": 0.5} and got.recipe == {"epochs": 3, "lr": 5e-4}
    assert got == meta.replace(labels=got.labels) and got.labels.names == cityscapes().names
    assert got.source == str(path)


def test_tiny_weights_are_saved_as_zeros_and_the_logits_keep(tmp_path, fixture):
    """Weights below 1e-12 (dead channels after weight decay) would make denormal products."""
    model = ESNet(19)
    model.load_state_dict({k: v for k, v in fixture["state_dict"].items() if not k.startswith("encoder_output_conv")})
    w = model.encoder.layers[0].conv3x1_1.weight.data
    w[0].fill_(1e-35)  # a denormal-producing dead output channel
    w[1].fill_(-3e-20)
    w[2].fill_(2e-11)  # small but kept
    model.eval()
    x = torch.rand(1, 3, 64, 128)
    with torch.inference_mode():
        before = model(x)
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model, make_metadata(cityscapes())))
    lw = loaded.encoder.layers[0].conv3x1_1.weight
    assert (lw[0] == 0).all() and (lw[1] == 0).all() and torch.equal(lw[2], w[2])
    torch.testing.assert_close(lw[3:], w[3:], rtol=0, atol=0)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), before, rtol=0, atol=1e-6)


def test_save_refuses_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match=r"rename it to m\.safetensors"):
        save_checkpoint(tmp_path / "m.pt", ESNet(3), make_metadata(cityscapes()))


class _CreatesAFile:
    """A pickle payload that, if ever unpickled, creates a file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _CreatesAFile(marker)}, path)
    with pytest.raises(ValueError, match="could execute code"):
        load_checkpoint(path)
    assert not marker.exists()
    raw = tmp_path / "evil_raw.pt"
    raw.write_bytes(pickle.dumps(_CreatesAFile(marker), protocol=2))
    with pytest.raises(ValueError, match=r"(could execute code|corrupt)"):
        load_checkpoint(raw)
    assert not marker.exists()


def test_missing_empty_truncated_and_corrupt_files(tmp_path, reference_checkpoint):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_checkpoint(empty)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(reference_checkpoint.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"corrupt or truncated.*re-download"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(garbage)


def test_wrong_architecture(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, path)
    with pytest.raises(ValueError, match=r"not an ESNet checkpoint.*conv1.weight"):
        load_checkpoint(path)
    meta = make_metadata(cityscapes()).replace(arch="erfnet")
    theirs = save_checkpoint(tmp_path / "erf.safetensors", ESNet(19), meta)
    with pytest.raises(ValueError, match="architecture 'erfnet'"):
        load_checkpoint(theirs)


def test_class_count_clash(tmp_path, fixture):
    path = tmp_path / "c19.pt"
    torch.save(fixture["state_dict"], path)
    with pytest.raises(ValueError, match=r"predicts 19 classes .* but 3 classes .* were requested"):
        load_checkpoint(path, class_names=["a", "b", "c"])
    three = LabelSet("x", ("a", "b", "c"), ((1, 1, 1), (2, 2, 2), (3, 3, 3)))
    with pytest.raises(ValueError, match="predicts 19 classes but the class list has 3"):
        load_checkpoint(path, labels=three)
    c5 = tmp_path / "c5.pt"
    torch.save(ESNet(5).state_dict(), c5)
    with pytest.raises(ValueError, match=r"5 classes and no metadata.*labels file"):
        load_checkpoint(c5)


def test_missing_and_unexpected_keys_are_listed(tmp_path, fixture):
    sd = dict(fixture["state_dict"])
    del sd["decoder.layers.1.bn1.weight"]
    sd["decoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    with pytest.raises(
        ValueError,
        match=r"1 missing keys \['decoder.layers.1.bn1.weight'\], 1 unexpected keys \['decoder.extra.weight'\]",
    ):
        load_checkpoint(path)


def test_device_argument(tmp_path, reference_checkpoint):
    model, _ = load_checkpoint(reference_checkpoint, device="cpu")
    assert next(model.parameters()).device.type == "cpu"
