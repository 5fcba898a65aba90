"""BN folding and the other inference rewrites keep ESNet's logits (1e-4). (The CPU kernels' tests
are in test_cpu_ops.py.)"""

import pytest
import torch
from torch import nn

from esnet_ros.core.checkpoint import load_checkpoint
from esnet_ros.core.model import ESNet
from esnet_ros.inference.backends import TorchBackend
from esnet_ros.inference.fold import (
    ConcatDownsampler,
    FoldedESNet,
    SubpixelConvTranspose,
    SumDownsampler,
    blocked_layout_downsamplers,
    bn_scale_shift,
    fold_batchnorm,
    subpixel_transposed_convs,
)

TOL = 1e-4


def randomized_esnet(seed=0, num_classes=5):
    """An ESNet whose BatchNorms have far-from-identity statistics and affines."""
    g = torch.Generator().manual_seed(seed)
    model = ESNet(num_classes)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(n, generator=g))  # negative scales too
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def reference(reference_checkpoint):
    model, meta = load_checkpoint(reference_checkpoint)
    blob = torch.load(reference_checkpoint, weights_only=True)
    return model, meta, blob["input"], blob["logits"]


def test_folded_reference_model_matches_the_authors_logits(reference):
    model, _, x, logits = reference
    folded = fold_batchnorm(model)
    with torch.inference_mode():
        got = folded(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert (got - logits).abs().max().item() < TOL


@pytest.mark.parametrize("seed", [0, 1])
def test_folding_with_random_statistics_and_negative_bn_scales(seed):
    model = randomized_esnet(seed)
    x = torch.rand(2, 3, 32, 64, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        ref = model(x)
        got = fold_batchnorm(model)(x)
    assert got.shape == ref.shape == (2, 5, 32, 64)
    assert (got - ref).abs().max().item() < TOL * max(1.0, ref.abs().max().item())
    # the source model is untouched
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_pfcu_shared_bn_is_folded_once_per_branch():
    model = randomized_esnet(3)
    pfcu = model.encoder.layers[7]
    folded = fold_batchnorm(model).encoder[7]
    scale, shift = bn_scale_shift(pfcu.bn2)
    for (_, conv_w), fw in zip(pfcu.branches(), folded.branch_w, strict=True):
        expected_bias = conv_w.bias.double() * scale + shift
        assert torch.allclose(fw.bias.double(), expected_bias, atol=1e-6)
        assert torch.allclose(fw.weight.double(), conv_w.weight.double() * scale.view(-1, 1, 1, 1), atol=1e-6)


def test_input_gain_folds_the_normalization_into_the_first_conv():
    model = randomized_esnet(4)
    gain = torch.tensor([1 / 255, 1 / 128, 1 / 64])
    pixels = torch.randint(0, 256, (1, 3, 16, 32)).float()
    with torch.inference_mode():
        ref = model(pixels * gain.view(1, 3, 1, 1))
        got = fold_batchnorm(model, input_gain=gain)(pixels)
    assert (got - ref).abs().max().item() < TOL * max(1.0, ref.abs().max().item())
    with pytest.raises(ValueError, match="3 positive per-channel factors"):
        fold_batchnorm(model, input_gain=[1.0, -1.0, 1.0])
    with pytest.raises(TypeError, match="needs an ESNet"):
        FoldedESNet(nn.Conv2d(3, 3, 1))


@pytest.mark.parametrize(
    "kw", [{"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}, {"kernel_size": 2, "stride": 2}]
)
def test_subpixel_rewrite_of_transposed_convs(kw):
    convt = nn.ConvTranspose2d(6, 5, **kw)
    x = torch.randn(2, 6, 7, 9)
    with torch.inference_mode():
        assert (SubpixelConvTranspose(convt)(x) - convt(x)).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="stride-2"):
        SubpixelConvTranspose(nn.ConvTranspose2d(3, 3, 3, stride=1))


def test_layout_rewrites_keep_the_logits():
    model = randomized_esnet(5)
    x = torch.rand(1, 3, 32, 64)
    with torch.inference_mode():
        ref = model(x)
        blocked = blocked_layout_downsamplers(fold_batchnorm(model))
        sub = subpixel_transposed_convs(fold_batchnorm(model))
        scale = max(1.0, ref.abs().max().item())
        assert (blocked(x) - ref).abs().max().item() < TOL * scale
        assert (sub(x) - ref).abs().max().item() < TOL * scale
    assert isinstance(blocked.initial_block, SumDownsampler)  # 13 + 3 channels: not multiples of 16
    assert isinstance(blocked.encoder[3], ConcatDownsampler) and isinstance(blocked.encoder[6], ConcatDownsampler)


def test_torch_backend_variants_match_plain_eager(reference):
    model, _meta, x, logits = reference
    cpu = torch.device("cpu")
    plain = TorchBackend(model, cpu, "fp32", fold_bn=False, channels_last=False)
    fast = TorchBackend(model, cpu, "fp32")
    assert plain.variant == "" and fast.variant == "folded+channels_last"
    a, b = plain(x).clone(), fast(x)
    assert (a - logits).abs().max().item() < 1e-5
    assert (b - a).abs().max().item() < TOL
    buf = fast.input_buffer(tuple(x.shape))
    assert buf.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):
        TorchBackend(model, cpu, "fp32", cuda_graph=True)


def test_non_esnet_models_are_run_as_they_are():
    net = nn.Conv2d(3, 4, 1)
    be = TorchBackend(net, torch.device("cpu"), "fp32")
    x = torch.rand(1, 3, 8, 16)
    assert be.variant == "" and torch.allclose(be(x), net(x))
