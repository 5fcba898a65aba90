"""The commands that run the engine take the node's parameters, with the node's defaults."""

from __future__ import annotations

import argparse

import pytest

from esnet_ros.cli.engine_options import ENGINE_DEFAULTS, add_engine_arguments, build_segmenter


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_the_nodes_parameter_defaults():
    pytest.importorskip("rclpy")
    from esnet_ros.ros.parameters import PARAMETERS

    args = parse()
    for name, default in ENGINE_DEFAULTS.items():
        assert getattr(args, name) == default == PARAMETERS[name][0], name


def test_every_default_has_one_source():
    """The node, the engine, the bag job and its CLI, and config/esnet.yaml agree on each shared default."""
    pytest.importorskip("rclpy")
    import inspect
    import pathlib

    import yaml

    from esnet_ros.cli import get_args_parser
    from esnet_ros.inference.defaults import MAX_INPUT_PIXELS
    from esnet_ros.inference.segmenter import Segmenter
    from esnet_ros.ros.bag.job import BagJob
    from esnet_ros.ros.parameters import PARAMETERS

    signature = inspect.signature(Segmenter).parameters
    for name in ("device", "backend", "precision", "num_threads"):
        assert signature[name].default == ENGINE_DEFAULTS[name] == PARAMETERS[name][0], name
    bag = get_args_parser("bag").parse_args(["bag"])
    assert BagJob.max_input_pixels == bag.max_input_pixels == PARAMETERS["max_input_pixels"][0] == MAX_INPUT_PIXELS
    assert BagJob.upsample == bag.upsample == PARAMETERS["upsample"][0]
    config = yaml.safe_load((pathlib.Path(__file__).parents[2] / "config" / "esnet.yaml").read_text())
    params = config["/**"]["ros__parameters"]
    for name, (default, _) in PARAMETERS.items():
        if name in params:
            assert params[name] == default, (
                f"config/esnet.yaml {name}: {params[name]!r}, the node's default {default!r}"
            )


@pytest.mark.parametrize("command", ["predict", "evaluate", "bag"])
def test_every_engine_command_takes_the_engine_options(command):
    from esnet_ros.cli import get_args_parser

    parser = get_args_parser(command)
    required = {"predict": ["--input", "x", "--output", "y"], "evaluate": ["--data", "x"], "bag": []}[command]
    args = parser.parse_args(
        [
            command,
            *required,
            "--backend",
            "openvino",
            "--precision",
            "bf16",
            "--num-threads",
            "1",
            "--upsample",
            "bilinear",
            "--input-size",
            "64x32",
        ]
    )
    assert (args.backend, args.precision, args.num_threads, args.upsample, args.input_size) == (
        "openvino",
        "bf16",
        1,
        "bilinear",
        "64x32",
    )


def test_build_segmenter_uses_the_options(reference_checkpoint):
    seg = build_segmenter(
        parse(
            "--weights",
            str(reference_checkpoint),
            "--device",
            "cpu",
            "--backend",
            "torch",
            "--input-size",
            "64x32",
            "--num-threads",
            "1",
        )
    )
    assert (seg.input_size, seg.backend.name, str(seg.device), seg.precision) == ((64, 32), "torch", "cpu", "fp32")
    with pytest.raises(ValueError, match="--num-threads -1 must be >= 0"):
        build_segmenter(parse("--num-threads", "-1"))
    with pytest.raises(ValueError, match="--input-size '64' must look like WIDTHxHEIGHT"):
        build_segmenter(parse("--input-size", "64"))
