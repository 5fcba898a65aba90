"""The engine's two pipelines: the Segmenter picks one at construction and every call goes to it.

The CUDA pipeline's ops are torch ops, so it runs on the CPU device too: here it is compared with the CPU
pipeline on the same backend (what ``test_cuda_path_equals_cpu_path`` checks on a GPU), so its code runs
on every machine.
"""

import ast
import inspect

import numpy as np
import pytest

from esnet_ros.core.labels import LabelSet
from esnet_ros.inference import segmenter as segmenter_module
from esnet_ros.inference.label_space import LabelSpace
from esnet_ros.inference.pipelines import CallOptions, CpuPipeline, CudaPipeline
from esnet_ros.inference.segmenter import UPSAMPLE_MODES, Segmenter

OUTS = ("labels", "confidence", "color", "overlay")


@pytest.fixture(scope="module")
def engines(reference_checkpoint):
    """(the CPU pipeline's Segmenter, one on the same backend with the CUDA pipeline on the CPU device)."""
    cpu = Segmenter(reference_checkpoint, device="cpu", backend="torch", input_size=(128, 64))
    torch_ops = Segmenter(reference_checkpoint, device="cpu", backend="torch", input_size=(128, 64))
    torch_ops.pipeline = CudaPipeline(
        torch_ops.backend, torch_ops.meta.normalization, torch_ops.labels.palette(), torch_ops.input_size
    )
    return cpu, torch_ops


def assert_same_outputs(a, b, shape):
    """The CPU-vs-CUDA contract: labels agree on >99.9% of pixels, confidence within 2, images where labels agree."""
    assert a.labels.shape == b.labels.shape == shape
    agree = a.labels == b.labels
    assert agree.mean() > 0.999
    if a.confidence is not None:
        assert np.abs(a.confidence.astype(int) - b.confidence.astype(int)).max() <= 2
    if a.color is not None:
        np.testing.assert_array_equal(a.color[agree], b.color[agree])
    if a.overlay is not None:
        assert np.abs(a.overlay[agree].astype(int) - b.overlay[agree].astype(int)).max() <= 1


def test_the_device_picks_the_pipeline(engines):
    cpu, _ = engines
    assert isinstance(cpu.pipeline, CpuPipeline)
    assert cpu.pipeline.backend is cpu.backend


def test_no_device_checks_in_the_call_path():
    """Only construction looks at the device; every call goes to the pipeline it chose."""
    tree = ast.parse(inspect.getsource(segmenter_module.Segmenter))
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name != "__init__"):
        names = {n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute)}
        assert "type" not in names and "cuda" not in names, fn.name


@pytest.mark.parametrize("upsample", UPSAMPLE_MODES)
def test_cuda_pipeline_on_the_cpu_device_equals_the_cpu_pipeline(engines, upsample):
    cpu, torch_ops = engines
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (70, 130, 3), dtype=np.uint8)
    assert_same_outputs(
        cpu(img, "bgr", outputs=OUTS, upsample=upsample),
        torch_ops(img, "bgr", outputs=OUTS, upsample=upsample),
        (70, 130),
    )
    big = rng.integers(0, 256, (200, 390, 3), dtype=np.uint8)
    assert_same_outputs(
        cpu(big, "rgb", outputs=OUTS, upsample=upsample),
        torch_ops(big, "rgb", outputs=OUTS, upsample=upsample),
        (200, 390),
    )
    net_a = cpu(big, "bgr", outputs=OUTS, resolution="network", upsample=upsample)
    net_b = torch_ops(big, "bgr", outputs=OUTS, resolution="network", upsample=upsample)
    assert_same_outputs(net_a, net_b, (64, 128))


def test_both_pipelines_publish_in_a_label_space(engines):
    cpu, torch_ops = engines
    space = LabelSpace.for_model(cpu.labels, min_confidence=0.3)
    img = np.random.default_rng(3).integers(0, 256, (70, 130, 3), dtype=np.uint8)
    a = cpu(img, "bgr", outputs=("labels", "color", "overlay"), label_space=space)
    b = torch_ops(img, "bgr", outputs=("labels", "color", "overlay"), label_space=space)
    assert (a.labels == space.unknown_label).any()  # the threshold really cut some pixels
    assert_same_outputs(a, b, (70, 130))
    assert a.confidence is not None and b.confidence is not None  # the threshold asked for it


@pytest.mark.parametrize("which", (0, 1))
def test_out_arrays_and_on_labels(engines, which):
    """CPU: computed into ``out`` and labels handed over first; CUDA: copied into ``out``, then labels."""
    seg = engines[which]
    img = np.random.default_rng(5).integers(0, 256, (70, 130, 3), dtype=np.uint8)
    whole = seg(img, "rgb", outputs=OUTS)
    into = {"labels": np.zeros((70, 130), np.uint8), "overlay": np.zeros((70, 130, 3), np.uint8)}
    seen = []
    got = seg(img, "rgb", outputs=OUTS, out=into, on_labels=seen.append)
    assert got.labels is into["labels"] and got.overlay is into["overlay"] and seen[0] is into["labels"]
    for name in OUTS:
        np.testing.assert_array_equal(getattr(got, name), getattr(whole, name))
    with pytest.raises(ValueError, match=r"out\['labels'\] is \(70, 131\) uint8; pass a writable C-contiguous"):
        seg(img, "rgb", out={"labels": np.zeros((70, 131), np.uint8)})


@pytest.mark.parametrize("which", (0, 1))
def test_network_input_and_release(engines, which):
    seg = engines[which]
    img = np.random.default_rng(6).integers(0, 256, (70, 130, 3), dtype=np.uint8)
    x = seg.network_input(img, "bgr")
    assert x.shape == (1, 3, 64, 128) and x.dtype == np.float32
    np.testing.assert_allclose(x, engines[0].network_input(img, "bgr"), rtol=0, atol=1e-5)
    before = seg(img, "bgr", outputs=OUTS)
    seg.release()  # frees the pipeline's buffers; the next call allocates them again
    after = seg(img, "bgr", outputs=OUTS)
    for name in OUTS:
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name))


def test_one_signature_for_call_and_infer(engines):
    """``seg(image, ...)`` takes ``infer``'s options, in its order or by name, and equals the two halves."""
    seg, _ = engines
    img = np.random.default_rng(8).integers(0, 256, (70, 130, 3), dtype=np.uint8)
    by_name = seg(img, color_order="bgr", outputs=("labels", "overlay"), resolution="network", alpha=0.25)
    in_order = seg(img, "bgr", ("labels", "overlay"), "network", 0.25)
    halves = seg.finish(seg.infer(img, "bgr", ("labels", "overlay"), "network", 0.25))
    for got in (in_order, halves):
        np.testing.assert_array_equal(got.labels, by_name.labels)
        np.testing.assert_array_equal(got.overlay, by_name.overlay)
    with pytest.raises(TypeError, match="colour_order"):
        seg(img, colour_order="bgr")


def test_call_options_are_checked_once():
    space = LabelSpace.for_model(LabelSet("toy", ("a", "b"), ((0, 0, 0), (1, 1, 1))), min_confidence=0.5)
    o = CallOptions.parse(
        color_order="BGR",
        outputs=("overlay", "labels", "overlay"),
        resolution="Input",
        alpha=1,
        upsample="bilinear",
        label_space=space,
    )
    assert o == CallOptions(("overlay", "labels", "confidence"), "input", 1.0, "bgr", "bilinear", space)
    assert o.output_hw(np.zeros((5, 7, 3), np.uint8), (16, 8)) == (5, 7)
    with pytest.raises(ValueError, match=r"alpha=-0.1 must be within 0..1"):
        CallOptions.parse(
            color_order="rgb", outputs=(), resolution="network", alpha=-0.1, upsample="nearest", label_space=None
        )
