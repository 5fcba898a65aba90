"""ESNet: An Efficient Symmetric Network for Real-time Semantic Segmentation.

Yu Wang, Quan Zhou, Jian Xiong, Xiaofu Wu, Xin Jin (PRCV 2019), https://arxiv.org/abs/1906.09826.

The module and attribute names follow the authors' public implementation, so their
checkpoints load without a key mapping (see ``shared/reference/ESNET_REFERENCE.md``)::

    encoder.initial_block           Downsampler(3, 16)
    encoder.layers.0-2              FCU(16, K=3)
    encoder.layers.3                Downsampler(16, 64)
    encoder.layers.4-5              FCU(64, K=5)
    encoder.layers.6                Downsampler(64, 128)
    encoder.layers.7-9              PFCU(128)
    decoder.layers.0                Upsampler(128, 64)
    decoder.layers.1-2              FCU(64, K=5)
    decoder.layers.3                Upsampler(64, 16)
    decoder.layers.4-5              FCU(16, K=3)
    decoder.output_conv             ConvTranspose2d(16, C, 2, stride 2)
    encoder_output_conv             1x1 conv 128 -> C (optional, encoder-only training stage)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# the size helpers live in the torch-free core.sizes (light front ends import them from there)
from esnet_ros.core.sizes import OUTPUT_STRIDE, check_input_size, nearest_valid_sizes, parse_size

__all__ = [
    "ESNet",
    "Downsampler",
    "FCU",
    "PFCU",
    "Upsampler",
    "esnet",
    "OUTPUT_STRIDE",
    "check_input_size",
    "nearest_valid_sizes",
    "parse_size",
]

BN_EPS = 1e-3


class Downsampler(nn.Module):
    """Stride-2 downsampling: ``[conv3x3(in -> out-in), maxpool2x2]`` concatenated, BN, ReLU.

    ``(N,in,H,W) -> (N,out,H/2,W/2)``
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f"Downsampler needs out_channels > in_channels, got {in_channels}->{out_channels}")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        b = self.pool(x)
        if a.shape[2:] != b.shape[2:]:  # odd sizes: pad the pooled branch to the conv's size
            b = F.pad(b, (0, a.shape[3] - b.shape[3], 0, a.shape[2] - b.shape[2]))
        return F.relu(self.bn(torch.cat([a, b], dim=1)))


class FCU(nn.Module):
    """Factorized convolution unit: two (Kx1, ReLU, 1xK, BN) pairs, dropout, residual, ReLU.

    ``(N,C,H,W) -> (N,C,H,W)``
    """

    def __init__(self, channels: int, kernel_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        k, p = kernel_size, (kernel_size - 1) // 2
        self.conv3x1_1 = nn.Conv2d(channels, channels, (k, 1), padding=(p, 0), bias=True)
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, k), padding=(0, p), bias=True)
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.conv3x1_2 = nn.Conv2d(channels, channels, (k, 1), padding=(p, 0), bias=True)
        self.conv1x3_2 = nn.Conv2d(channels, channels, (1, k), padding=(0, p), bias=True)
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv3x1_1(x))
        y = F.relu(self.bn1(self.conv1x3_1(y)))
        y = F.relu(self.conv3x1_2(y))
        y = self.dropout(self.bn2(self.conv1x3_2(y)))
        return F.relu(y + x)


class PFCU(nn.Module):
    """Parallel factorized convolution unit with dilations (2, 5, 9) and one shared BN.

    A shared (3x1, ReLU, 1x3, BN, ReLU) stem feeds three dilated (3x1, ReLU, 1x3) branches;
    each branch is normalized by the same ``bn2`` (as in the authors' code) and dropped out.
    Output is ``ReLU(x + b2 + b5 + b9)``.  ``(N,C,H,W) -> (N,C,H,W)``
    """

    DILATIONS = (2, 5, 9)

    def __init__(self, channels: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=True)
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=True)
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        for d in self.DILATIONS:
            setattr(self, f"conv3x1_2{d}", nn.Conv2d(channels, channels, (3, 1), padding=(d, 0), dilation=(d, 1)))
            setattr(self, f"conv1x3_2{d}", nn.Conv2d(channels, channels, (1, 3), padding=(0, d), dilation=(1, d)))
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def branches(self) -> list[tuple[nn.Conv2d, nn.Conv2d]]:
        """The (3x1, 1x3) conv pairs of the dilated branches, in dilation order."""
        return [(getattr(self, f"conv3x1_2{d}"), getattr(self, f"conv1x3_2{d}")) for d in self.DILATIONS]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv3x1_1(x))
        y = F.relu(self.bn1(self.conv1x3_1(y)))
        out = x
        for conv_h, conv_w in self.branches():
            out = out + self.dropout(self.bn2(conv_w(F.relu(conv_h(y)))))
        return F.relu(out)


class Upsampler(nn.Module):
    """Stride-2 transposed 3x3 conv, BN, ReLU.  ``(N,in,H,W) -> (N,out,2H,2W)``"""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=True)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Encoder(nn.Module):
    """``(N,3,H,W) -> (N,128,H/8,W/8)`` features."""

    def __init__(self) -> None:
        super().__init__()
        self.initial_block = Downsampler(3, 16)
        self.layers = nn.Sequential(
            *(FCU(16, 3, 0.03) for _ in range(3)),
            Downsampler(16, 64),
            *(FCU(64, 5, 0.03) for _ in range(2)),
            Downsampler(64, 128),
            *(PFCU(128, 0.3) for _ in range(3)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.initial_block(x))


class Decoder(nn.Module):
    """``(N,128,H/8,W/8) -> (N,C,H,W)`` logits."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            Upsampler(128, 64),
            *(FCU(64, 5, 0.0) for _ in range(2)),
            Upsampler(64, 16),
            *(FCU(16, 3, 0.0) for _ in range(2)),
        )
        self.output_conv = nn.ConvTranspose2d(16, num_classes, 2, stride=2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_conv(self.layers(x))


class ESNet(nn.Module):
    """ESNet (Wang et al., 2019): a symmetric encoder-decoder of factorized convolution units.

    Args:
        num_classes: number of output classes (19 for Cityscapes).
        encoder_head: add the 1x1 ``encoder_output_conv`` used by the encoder-only training
            stage (``forward(x, encoder_only=True)``).  Not part of the inference graph.

    With 19 classes the inference graph has 1,659,071 parameters, 1,661,522 with the head.
    """

    def __init__(self, num_classes: int = 19, *, encoder_head: bool = False) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or not 1 <= num_classes <= 255:
            raise ValueError(f"num_classes={num_classes!r} must be an int in 1..255 (labels are uint8)")
        self.num_classes = num_classes
        self.encoder = Encoder()
        self.decoder = Decoder(num_classes)
        self.encoder_output_conv = nn.Conv2d(128, num_classes, 1, bias=True) if encoder_head else None

    def forward(self, x: torch.Tensor, encoder_only: bool = False) -> torch.Tensor:
        """``(N,3,H,W)`` float -> ``(N,C,H,W)`` logits (``(N,C,H/8,W/8)`` when ``encoder_only``)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"ESNet expects a (N,3,H,W) tensor, got shape {tuple(x.shape)}")
        check_input_size(int(x.shape[3]), int(x.shape[2]))
        features = self.encoder(x)
        if encoder_only:
            if self.encoder_output_conv is None:
                raise ValueError("encoder_only=True needs ESNet(..., encoder_head=True)")
            return self.encoder_output_conv(features)
        return self.decoder(features)


def esnet(*, num_classes: int = 19, encoder_head: bool = False) -> ESNet:
    """Keyword-only builder for :class:`ESNet`."""
    return ESNet(num_classes, encoder_head=encoder_head)
