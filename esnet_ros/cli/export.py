"""``esnet export``: ESNet to ONNX (BN folded, metadata inside), optionally int8-quantized.

    esnet export --weights esnet.safetensors --output esnet_1024x512.onnx --width 1024 --height 512
    esnet export --weights esnet.safetensors --output esnet.onnx --dynamic      # any H, W (multiples of 8)
    esnet export --weights w.pt --output esnet_int8.onnx --int8 --calibration-dir synth/leftImg8bit/train

The library: :mod:`esnet_ros.inference.onnx_export` and :mod:`esnet_ros.inference.quantize`.
"""

from __future__ import annotations

import argparse
import pathlib

from esnet_ros.core.checkpoint import load_checkpoint, resolve_weights
from esnet_ros.core.labels import load_labels_yaml
from esnet_ros.core.metadata import META_KEY
from esnet_ros.inference.onnx_export import OPSET, export_onnx
from esnet_ros.inference.quantize import QUANTIZERS, quantize_model

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default="",
        help="checkpoint (.safetensors or .pt; default: the bundled CamVid model; `synthetic` names the demo's)",
    )
    parser.add_argument("--output", required=True, help="ONNX file to write (.onnx)")
    parser.add_argument("--width", type=int, default=None, help="network input width (default: the checkpoint's)")
    parser.add_argument("--height", type=int, default=None, help="network input height (default: the checkpoint's)")
    parser.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    parser.add_argument("--labels", default=None, help="class/palette YAML for metadata-less custom checkpoints")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    parser.add_argument("--no-fold", action="store_true", help="keep BatchNorm layers (default: folded)")
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch comparison")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also quantize to int8 (static, calibrated); see esnet_ros/inference/quantize.py",
    )
    parser.add_argument(
        "--calibration-dir", default=None, help="images for int8 calibration (png/jpg, searched recursively)"
    )
    parser.add_argument("--calibration-images", type=int, default=32, help="how many calibration images (default 32)")
    parser.add_argument(
        "--quantizer",
        choices=QUANTIZERS,
        default="onnxruntime",
        help="who writes the int8 QDQ model: onnxruntime (fastest on ONNX Runtime; fixed size) or "
        "nncf (fastest on OpenVINO; keeps --dynamic)",
    )


def run(args: argparse.Namespace) -> int:
    if args.int8 and not args.calibration_dir:
        raise ValueError(
            "--int8 needs --calibration-dir DIR with images like the deployment's (e.g. esnet synth output)"
        )
    labels = load_labels_yaml(args.labels) if args.labels else None
    model, meta = load_checkpoint(resolve_weights(args.weights), "cpu", labels=labels)
    size = (args.width or meta.input_size[0], args.height or meta.input_size[1])
    output = pathlib.Path(args.output)
    options = {"input_size": size, "fold_bn": not args.no_fold, "opset": args.opset, "verify": not args.no_verify}
    if args.int8:
        fp32_path = output.with_name(output.stem + "_fp32.onnx")
        export_onnx(model, meta, fp32_path, dynamic=args.dynamic and args.quantizer == "nncf", **options)
        quantize_model(
            fp32_path,
            output,
            args.calibration_dir,
            num_images=args.calibration_images,
            quantizer=args.quantizer,
            calibration_size=size,
        )
        print(f"wrote {output} (int8) and {fp32_path} (fp32), input {size[0]}x{size[1]}")
        return 0
    export_onnx(model, meta, output, dynamic=args.dynamic, **options)
    shape = "dynamic (N,3,H,W)" if args.dynamic else f"(1,3,{size[1]},{size[0]})"
    print(f"wrote {output}: input {shape}, {meta.num_classes} classes, metadata in metadata_props['{META_KEY}']")
    return 0
