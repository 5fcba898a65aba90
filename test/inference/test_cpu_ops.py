"""The engine's CPU kernels equal the torch ops they replace."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from esnet_ros.inference.cpu_ops import (
    CpuBuffers,
    argmax_channels,
    blend,
    nearest_index,
    normalize_into,
    resize_bilinear_planes,
    resize_nearest,
)


@pytest.mark.parametrize("shape", [(19, 64, 128), (3, 5, 7), (19, 300, 400)])
def test_argmax_channels_equals_torch_first_maximum(shape):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape).astype(np.float32)
    logits[2, 0, :] = logits[1, 0, :] = 50.0  # exact ties: the first class wins, as in torch
    labels = np.empty(shape[1:], np.uint8)
    conf = np.empty(shape[1:], np.uint8)
    argmax_channels(logits, labels, conf)
    t = torch.from_numpy(logits)
    np.testing.assert_array_equal(labels, t.argmax(0).numpy())
    assert (labels[0] == 1).all()
    expected = (1.0 / torch.exp(t - t.amax(0, keepdim=True)).sum(0)).mul(255).round().to(torch.uint8).numpy()
    assert np.abs(conf.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("src, dst", [(512, 720), (1024, 1280), (64, 70), (128, 100), (7, 3), (5, 5)])
def test_nearest_index_and_resize_equal_torch_nearest(src, dst):
    probe = torch.arange(src, dtype=torch.float32).view(1, 1, 1, src)
    expected = F.interpolate(probe, size=(1, dst), mode="nearest").view(-1).long().numpy()
    np.testing.assert_array_equal(nearest_index(src, dst), expected)
    labels = np.random.default_rng(1).integers(0, 19, (src, src + 3), dtype=np.uint8)
    got = resize_nearest(labels, (dst, dst + 1), CpuBuffers())
    expected = F.interpolate(torch.from_numpy(labels)[None, None].float(), size=(dst, dst + 1), mode="nearest")
    np.testing.assert_array_equal(got, expected[0, 0].to(torch.uint8).numpy())


def test_resize_nearest_moves_channels_with_their_pixel():
    labels = np.random.default_rng(2).integers(0, 19, (256, 512), dtype=np.uint8)
    palette = np.random.default_rng(3).integers(0, 256, (19, 3), dtype=np.uint8)
    buffers = CpuBuffers()
    got = resize_nearest(palette[labels], (720, 1280), buffers)
    assert got.shape == (720, 1280, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, palette[resize_nearest(labels, (720, 1280), buffers)])


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_blend_equals_torch_lerp_rounded(alpha):
    rng = np.random.default_rng(4)
    base = rng.integers(0, 256, (37, 61, 3), dtype=np.uint8)  # odd width: OpenCV's scalar tail too
    color = rng.integers(0, 256, (37, 61, 3), dtype=np.uint8)
    expected = (
        torch.lerp(torch.from_numpy(base).float(), torch.from_numpy(color).float(), alpha).round_().to(torch.uint8)
    )
    buffers = CpuBuffers()
    np.testing.assert_array_equal(blend(base, color, alpha, buffers), expected.numpy())
    if alpha in (0.0, 0.25, 0.5, 1.0):  # exact products in float32: OpenCV's one pass serves them
        assert buffers.exact_blend[alpha] is True


@pytest.mark.parametrize(
    "src, dst", [((8, 16), (12, 20)), ((32, 64), (90, 160)), ((16, 32), (16, 32)), ((64, 128), (32, 64))]
)
def test_resize_bilinear_planes_equals_torch_bilinear(src, dst):
    planes = np.random.default_rng(2).standard_normal((5, *src)).astype(np.float32)
    got = resize_bilinear_planes(planes, dst, CpuBuffers())
    expected = F.interpolate(torch.from_numpy(planes)[None], size=dst, mode="bilinear", align_corners=False)[0]
    assert got.shape == (5, *dst) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)  # float rounding only


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_normalize_into_equals_torch(flip, channels_last):
    image = np.random.default_rng(3).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    gain = np.array([1 / 255, 2 / 255, 4 / 255], np.float32)
    bias = np.array([0.0, -1.0, -2.0], np.float32)
    x = torch.empty(1, 3, 16, 32)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    got = normalize_into(image, x, gain, bias, flip, CpuBuffers())
    assert got is x
    t = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    if flip:
        t = t.flip(1)
    t = F.interpolate(t, size=(16, 32), mode="bilinear", align_corners=False)
    expected = t * torch.from_numpy(gain).view(1, 3, 1, 1) + torch.from_numpy(bias).view(1, 3, 1, 1)
    torch.testing.assert_close(got.contiguous(), expected, rtol=0, atol=1e-4)
