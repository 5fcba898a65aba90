"""The CPU's limit: model MACs counted from the layers, CPU identity, GEMM peaks (cpu_peak.py)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from esnet_ros.core.model import ESNet
from esnet_ros.inference import devices
from esnet_ros.inference.cpu_peak import MICROARCHITECTURES, cpu_identity, gemm_peaks, model_macs


def test_macs_of_a_conv_and_a_transposed_conv_by_hand():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ConvTranspose2d(8, 4, 2, stride=2),
        torch.nn.Conv2d(4, 4, (3, 1), padding=(1, 0), groups=2),
    )
    # (16x8 out x 8 ch x 3 in x 9) + (16x8 in x 8 in x 4 out x 4 taps) + (32x16 out x 4 ch x 2 in x 3)
    assert model_macs(net, (16, 8)) == 16 * 8 * 8 * 3 * 9 + 16 * 8 * 8 * 4 * 4 + 32 * 16 * 4 * 2 * 3


def test_esnet_macs_equal_torch_flop_counter():
    model = ESNet(11).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 64, 96))
    assert model_macs(model, (96, 64)) == counter.get_total_flops() // 2


def test_cpu_identity_names_this_cpu():
    ident = cpu_identity()
    assert ident["flags"]["avx2"] == devices.cpu_isa()["avx2"]
    if ident["vendor"] == "AuthenticAMD" and ident["family"] == 25 and ident["model"] < 0x10:
        assert ident["microarchitecture"] == "Zen 3 (EPYC 7003 Milan)"
    names = {name for *_, name in MICROARCHITECTURES}
    assert ident["microarchitecture"] is None or ident["microarchitecture"] in names


@pytest.mark.skipif(not devices.openvino_version(), reason="OpenVINO is not installed")
def test_gemm_peaks_run_openvino_fp32_and_int8_kernels():
    peaks = gemm_peaks(1, size=256, seconds=0.2)
    assert peaks["threads"] == 1 and peaks["gemm"] == "256x256 by 256x256 (1x1 convolution)"
    assert "i8" in peaks["int8"]["kernel"].lower() and "f32" in peaks["fp32"]["kernel"].lower()
    for p in ("fp32", "int8"):
        one, three = peaks[p]["shapes"]
        assert (one["shape"], three["shape"]) == ("1x1 conv 256->256 at 16x16", "3x3 conv 64->64 at 32x32")
        assert one["gmacs_per_s"] == pytest.approx(256**3 / one["best_ms"] / 1e6, rel=1e-2)
        assert three["gmacs_per_s"] == pytest.approx(64 * 64 * 9 * 32 * 32 / three["best_ms"] / 1e6, rel=1e-2)
        assert peaks[p]["gmacs_per_s"] == max(one["gmacs_per_s"], three["gmacs_per_s"])
