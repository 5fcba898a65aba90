"""The inference engine on hand-checked examples: labels, confidence, palette, overlay, sizes, errors."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from esnet_ros.core.checkpoint import make_metadata
from esnet_ros.core.labels import LabelSet
from esnet_ros.inference.cpu_ops import network_input
from esnet_ros.inference.segmenter import DEFAULT_UPSAMPLE, UPSAMPLE_MODES, Segmenter

LABELS = LabelSet("toy", ("left", "right", "never"), ((200, 0, 0), (0, 100, 0), (0, 0, 50)))


class RedOracle(nn.Module):
    """A fixed 'network': class 0 where red is high, class 1 where it is low (logits 4 / 0)."""

    num_classes = 3

    def forward(self, x):  # (N,3,H,W) normalized RGB in 0..1
        r = x[:, :1]
        return torch.cat([4 * r, 4 * (1 - r), torch.zeros_like(r)], dim=1)


def make(size=(16, 8), device="cpu", **kw):
    return Segmenter((RedOracle(), make_metadata(LABELS, input_size=size)), device=device, **{"backend": "torch", **kw})


def half_red(h=8, w=16):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 255  # left half red (RGB)
    img[:, :, 1] = 10
    return img


CONF = round(255 * math.exp(4) / (math.exp(4) + 2))  # max softmax of logits (4, 0, 0) -> 246


def test_labels_confidence_color_and_overlay_by_hand():
    seg = make()
    img = half_red()
    out = seg(img, "rgb", outputs=("labels", "confidence", "color", "overlay"), alpha=0.5)
    expected = np.zeros((8, 16), np.uint8)
    expected[:, 8:] = 1
    np.testing.assert_array_equal(out.labels, expected)
    assert out.labels.dtype == np.uint8 and out.confidence.dtype == np.uint8
    assert CONF == 246
    np.testing.assert_array_equal(out.confidence, np.full((8, 16), CONF, np.uint8))
    assert tuple(out.color[0, 0]) == (200, 0, 0) and tuple(out.color[0, 15]) == (0, 100, 0)
    # overlay = round(0.5 * input + 0.5 * color), in the input's order (RGB here)
    assert tuple(out.overlay[0, 0]) == (228, 5, 0)  # (255+200)/2=227.5, (10+0)/2=5
    assert tuple(out.overlay[0, 15]) == (0, 55, 0)
    assert set(out.timings_ms) == {"preprocess", "inference", "postprocess"}


def test_bgr_input_gives_the_same_labels_and_a_bgr_overlay():
    seg = make()
    rgb = half_red()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    a = seg(rgb, "rgb", outputs=("labels", "overlay"), alpha=1.0)
    b = seg(bgr, "bgr", outputs=("labels", "overlay"), alpha=1.0)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert tuple(a.overlay[0, 0]) == (200, 0, 0)  # alpha 1: the mask only
    assert tuple(b.overlay[0, 0]) == (0, 0, 200)  # same mask, in BGR order


def test_only_requested_outputs_are_returned():
    out = make()(half_red(), outputs=("color",))
    assert out.labels is None and out.confidence is None and out.overlay is None
    assert out.color.shape == (8, 16, 3)


def test_output_resolution_modes():
    seg = make(size=(16, 8))
    img = half_red(12, 20)  # any size: resized to the 16x8 network input
    full = seg(img, outputs=("labels", "overlay"), resolution="input")
    net = seg(img, outputs=("labels", "overlay"), resolution="network")
    assert full.labels.shape == (12, 20) and full.overlay.shape == (12, 20, 3)
    assert net.labels.shape == (8, 16) and net.overlay.shape == (8, 16, 3)
    assert full.labels[:, :8].max() == 0 and full.labels[:, 12:].min() == 1
    assert net.labels[:, :6].max() == 0 and net.labels[:, 10:].min() == 1


def test_upsample_modes_by_hand():
    """nearest: argmax at network size, labels repeated; bilinear: logits interpolated, then argmax."""
    assert UPSAMPLE_MODES == ("nearest", "bilinear") and DEFAULT_UPSAMPLE == "nearest"
    seg = make(size=(8, 8))
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :3, 0] = 255  # red in columns 0..2: class 0 there, class 1 elsewhere
    default = seg(img, outputs=("labels", "confidence"), resolution="input")
    # the 8x8 image is the network input: both modes agree when no upsampling is needed
    for mode in UPSAMPLE_MODES:
        same = seg(img, outputs=("labels",), upsample=mode).labels
        np.testing.assert_array_equal(same, default.labels)
    big = np.repeat(np.repeat(img, 4, axis=0), 4, axis=1)[:, :30]  # 32x30: not a multiple of the net size
    near = seg(big, outputs=("labels", "confidence"), upsample="nearest")
    bil = seg(big, outputs=("labels", "confidence"), upsample="bilinear")
    # reference: torch on the 8x8 network logits (the network sees big resized to 8x8, bilinear)
    x = (
        torch.nn.functional.interpolate(
            torch.from_numpy(big).permute(2, 0, 1)[None].float(), size=(8, 8), mode="bilinear", align_corners=False
        )
        / 255
    )
    logits = RedOracle()(x)
    up = torch.nn.functional.interpolate(logits, size=(32, 30), mode="bilinear", align_corners=False)[0]
    np.testing.assert_array_equal(bil.labels, up.argmax(0).numpy())
    nn_labels = torch.nn.functional.interpolate(logits.argmax(1, keepdim=True).float(), size=(32, 30), mode="nearest")
    np.testing.assert_array_equal(near.labels, nn_labels[0, 0].numpy())
    assert (near.labels != bil.labels).any()  # the boundary moves: they really differ
    conf = (up.softmax(0).amax(0) * 255).round().numpy()
    assert np.abs(bil.confidence.astype(int) - conf).max() <= 1  # confidence of the upsampled logits
    assert near.confidence.shape == bil.confidence.shape == (32, 30)
    # network resolution: the upsample mode does not matter
    np.testing.assert_array_equal(
        seg(big, resolution="network", upsample="bilinear").labels,
        seg(big, resolution="network", upsample="nearest").labels,
    )


def test_network_input_is_what_the_backend_gets():
    seg = make(size=(16, 8))
    img = half_red(12, 20)
    x = seg.network_input(img, "rgb")
    assert x.shape == (1, 3, 8, 16) and x.dtype == np.float32
    expected = (
        torch.nn.functional.interpolate(
            torch.from_numpy(img).permute(2, 0, 1)[None].float(), size=(8, 16), mode="bilinear", align_corners=False
        )
        / 255
    )
    np.testing.assert_allclose(x, expected.numpy(), rtol=0, atol=1e-5)
    # int8 calibration reads its inputs through the same kernel
    np.testing.assert_array_equal(x, network_input(img, seg.meta.normalization, seg.input_size, "rgb"))
    again = seg.network_input(img, "rgb")
    seg(half_red(), outputs=("labels",))  # the engine's own buffers are reused; the returned array is not
    np.testing.assert_array_equal(x, again)


def test_non_contiguous_views_are_accepted():
    img = half_red(8, 32)[:, ::2]  # a strided view, like a padded camera row
    out = make()(img, outputs=("labels",))
    assert out.labels.shape == (8, 16) and out.labels[0, 0] == 0 and out.labels[0, -1] == 1


def test_matches_the_model_on_the_reference_checkpoint(reference_checkpoint):
    from esnet_ros.core.checkpoint import load_checkpoint

    model, _ = load_checkpoint(reference_checkpoint)
    seg = Segmenter(reference_checkpoint, device="cpu", backend="torch", input_size=(128, 64))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    out = seg(img, "rgb", outputs=("labels", "confidence"))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        logits = model(x)[0]
    expected = logits.argmax(0).numpy().astype(np.uint8)
    agree = (out.labels == expected).mean()
    assert agree > 0.999, agree  # folding/fusion may flip exact ties only
    conf = (logits.softmax(0).amax(0) * 255).round().numpy()
    assert np.abs(out.confidence.astype(int) - conf).max() <= 1


def test_default_input_size_comes_from_the_checkpoint():
    assert make(size=(24, 16)).input_size == (24, 16)
    assert make(size=(24, 16), input_size=(32, 8)).input_size == (32, 8)


@pytest.mark.parametrize(
    "image, exc, message",
    [
        (np.zeros((8, 8, 3), np.float32), TypeError, "dtype float32; convert it to uint8"),
        ([[0, 0, 0]], TypeError, "must be a numpy.ndarray"),
        (np.zeros((8, 8), np.uint8), ValueError, r"shape \(8, 8\); expected \(H,W,3\)"),
        (np.zeros((8, 8, 4), np.uint8), ValueError, "3 color channels"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, "is empty"),
    ],
)
def test_bad_images(image, exc, message):
    with pytest.raises(exc, match=message):
        make()(image)


def test_bad_arguments():
    seg = make()
    with pytest.raises(ValueError, match="outputs='mask' must be one of: labels, confidence, color, overlay"):
        seg(half_red(), outputs=("mask",))
    with pytest.raises(ValueError, match="color_order='yuv'"):
        seg(half_red(), color_order="yuv")
    with pytest.raises(ValueError, match="resolution='full'"):
        seg(half_red(), resolution="full")
    with pytest.raises(ValueError, match="upsample='cubic' must be one of: nearest, bilinear"):
        seg(half_red(), upsample="cubic")
    with pytest.raises(ValueError, match=r"alpha=1.5 must be within 0..1"):
        seg(half_red(), outputs=("overlay",), alpha=1.5)
    with pytest.raises(ValueError, match=r"network input width=1020 .*try 1016 or 1024"):
        make(input_size=(1020, 512))
    with pytest.raises(ValueError, match="precision=fp16 needs a CUDA device"):
        make(precision="fp16")
    with pytest.raises(ValueError, match="device='tpu'"):
        make(device="tpu")


def test_cuda_requested_without_cuda_names_the_fix():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"no usable CUDA.*device=cpu or device=auto"):
        make(device="cuda")


def test_auto_device_falls_back_to_cpu(caplog):
    caplog.set_level("INFO", logger="esnet_ros.inference.devices")
    seg = Segmenter((RedOracle(), make_metadata(LABELS, input_size=(16, 8))), device="auto", backend="torch")
    if not torch.cuda.is_available():
        assert seg.device.type == "cpu" and seg.precision == "fp32"
        assert "running on the CPU" in caplog.text


@pytest.mark.cuda
def test_cuda_path_equals_cpu_path(reference_checkpoint):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (70, 130, 3), dtype=np.uint8)
    cpu = Segmenter(reference_checkpoint, device="cpu", backend="torch", input_size=(128, 64))
    gpu = Segmenter(reference_checkpoint, device="cuda", backend="torch", precision="fp32", input_size=(128, 64))
    outs = ("labels", "confidence", "color", "overlay")
    a = cpu(img, "bgr", outputs=outs)
    b = gpu(img, "bgr", outputs=outs)
    assert (a.labels == b.labels).mean() > 0.999
    assert np.abs(a.confidence.astype(int) - b.confidence.astype(int)).max() <= 2
    big = rng.integers(0, 256, (200, 390, 3), dtype=np.uint8)
    a = cpu(big, "bgr", outputs=("labels", "confidence"), upsample="bilinear")
    b = gpu(big, "bgr", outputs=("labels", "confidence"), upsample="bilinear")
    assert a.labels.shape == b.labels.shape == (200, 390)
    assert (a.labels == b.labels).mean() > 0.999
    assert np.abs(a.confidence.astype(int) - b.confidence.astype(int)).max() <= 2
    half = Segmenter(reference_checkpoint, device="cuda", backend="torch", precision="fp16", input_size=(128, 64))
    assert (half(img, "bgr").labels == a.labels).mean() > 0.98


@pytest.mark.parametrize("upsample", UPSAMPLE_MODES)
def test_two_halves_interleaved_equal_whole_calls(reference_checkpoint, upsample):
    """A pipeline runs infer() of the next frame before finish() of this one: the halves own their data,
    so interleaving them gives exactly what whole calls give (into caller buffers too)."""
    seg = Segmenter(reference_checkpoint, device="cpu", backend="torch", input_size=(128, 64))
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (70, 130, 3), dtype=np.uint8) for _ in range(3)]
    outs = ("labels", "confidence", "color", "overlay")
    whole = [seg(f, "bgr", outputs=outs, upsample=upsample) for f in frames]
    first = seg.infer(frames[0], "bgr", outputs=outs, upsample=upsample)
    second = seg.infer(frames[1], "bgr", outputs=outs, upsample=upsample)
    into = {"labels": np.zeros((70, 130), np.uint8), "overlay": np.zeros((70, 130, 3), np.uint8)}
    seen = []
    a = seg.finish(first, out=into, on_labels=lambda labels: seen.append(labels.copy()))
    third = seg.infer(frames[2], "bgr", outputs=outs, upsample=upsample)
    b, c = seg.finish(second), seg.finish(third)
    assert a.labels is into["labels"] and a.overlay is into["overlay"]
    np.testing.assert_array_equal(seen[0], whole[0].labels)
    for got, want in zip((a, b, c), whole, strict=True):
        for name in outs:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        assert set(got.timings_ms) == {"preprocess", "inference", "postprocess"}
    assert len({id(r.labels) for r in (a, b, c)}) == 3
