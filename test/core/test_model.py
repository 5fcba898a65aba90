"""ESNet architecture: parameter counts, shapes, size errors, and the authors' reference logits."""

import pytest
import torch

from esnet_ros.core.model import FCU, PFCU, Downsampler, ESNet, Upsampler, check_input_size, esnet


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "classes, head, expected",
    [(19, False, 1_659_071), (19, True, 1_661_522), (20, False, 1_659_136), (20, True, 1_661_716)],
)
def test_parameter_counts_match_the_authors_model(classes, head, expected):
    assert count(ESNet(classes, encoder_head=head)) == expected


def test_builder_is_keyword_only():
    assert count(esnet(num_classes=19)) == 1_659_071
    with pytest.raises(TypeError):
        esnet(19)


def test_block_shapes():
    x = torch.randn(2, 16, 8, 12)
    assert Downsampler(16, 64)(x).shape == (2, 64, 4, 6)
    assert FCU(16, 3, 0.03)(x).shape == x.shape
    assert FCU(16, 5)(x).shape == x.shape
    assert PFCU(16)(x).shape == x.shape
    assert Upsampler(16, 8)(x).shape == (2, 8, 16, 24)


def test_pfcu_shares_one_bn_across_its_branches():
    block = PFCU(128)
    bns = [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 2  # bn1 after the stem, bn2 shared by the three dilated branches
    dilations = [(h.dilation, w.dilation) for h, w in block.branches()]
    assert dilations == [((2, 1), (1, 2)), ((5, 1), (1, 5)), ((9, 1), (1, 9))]


def test_forward_shapes_and_encoder_head():
    model = ESNet(5, encoder_head=True).eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert model(x).shape == (1, 5, 32, 48)
        assert model(x, encoder_only=True).shape == (1, 5, 4, 6)
    with pytest.raises(ValueError, match="encoder_head=True"):
        ESNet(5)(x, encoder_only=True)


def test_size_not_divisible_by_8_names_the_nearest_valid_sizes():
    model = ESNet(3)
    with pytest.raises(ValueError, match=r"width=1020 must be a positive multiple of 8.*try 1016 or 1024"):
        model(torch.zeros(1, 3, 512, 1020))
    with pytest.raises(ValueError, match=r"height=30 .*try 24 or 32"):
        check_input_size(64, 30)
    with pytest.raises(ValueError, match=r"\(N,3,H,W\)"):
        model(torch.zeros(1, 4, 32, 32))


def test_num_classes_must_fit_uint8_labels():
    with pytest.raises(ValueError, match=r"1..255"):
        ESNet(300)


def test_reference_logits_reproduced(reference_checkpoint):
    fixture = torch.load(reference_checkpoint, weights_only=True)
    model = ESNet(19, encoder_head=True)
    model.load_state_dict(fixture["state_dict"], strict=True)  # authors' key names, no mapping
    model.eval()
    with torch.no_grad():
        logits = model(fixture["input"])
    assert logits.shape == fixture["logits"].shape == (1, 19, 64, 128)
    assert (logits - fixture["logits"]).abs().max().item() <= 1e-5


def test_parse_size_is_defined_once_and_torch_free():
    """core.sizes holds the one WIDTHxHEIGHT parser (network inputs and image sizes); no torch import."""
    import subprocess
    import sys

    from esnet_ros.core import model, sizes

    assert model.parse_size is sizes.parse_size and model.check_input_size is sizes.check_input_size
    assert sizes.parse_size(" 512X256 ") == (512, 256)
    with pytest.raises(ValueError, match=r"--crop-size height=250 must be a positive multiple of 8.*try 248 or 256"):
        sizes.parse_size("512x250", "--crop-size")
    assert sizes.parse_size("1282x721", "--size", network=False) == (1282, 721)
    with pytest.raises(ValueError, match="--size '8x8' is too small; use at least 16x16"):
        sizes.parse_size("8x8", "--size", network=False)
    with pytest.raises(ValueError, match=r"--camera-size '1x2x3' must look like WIDTHxHEIGHT, e.g. 1280x720"):
        sizes.parse_size("1x2x3", "--camera-size", network=False, example="1280x720")
    code = "import sys, esnet_ros.core.sizes; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
