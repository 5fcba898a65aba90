"""The segmentation node's parameters: the table with descriptors, their validation, the model config.

docs/node.md and config/esnet.yaml document the same table as :data:`PARAMETERS`; every descriptor
comes from :func:`esnet_ros.ros.descriptors.descriptor`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor

from esnet_ros.core.checkpoint import load_checkpoint, resolve_weights
from esnet_ros.core.labels import LabelSet, load_labels_yaml
from esnet_ros.core.model import OUTPUT_STRIDE, nearest_valid_sizes
from esnet_ros.inference.backends import calibration_options
from esnet_ros.inference.defaults import ENGINE_DEFAULTS, MAX_INPUT_PIXELS, UPSAMPLE_MODES
from esnet_ros.inference.devices import BACKENDS, PRECISIONS, resolve_device, resolve_precision
from esnet_ros.inference.onnx_export import read_onnx_metadata
from esnet_ros.ros.descriptors import choices_of, descriptor
from esnet_ros.ros.qos import RELIABILITIES

__all__ = [
    "PARAMETERS",
    "ros_syntax",
    "MODEL_PARAMS",
    "SIZE_PARAMS",
    "INPUT_PARAMS",
    "CHOICE_PARAMS",
    "MAX_INPUT_SIZE",
    "ModelConfig",
    "check_model_config",
    "check_choices",
    "check_size",
]

SIZE_PARAMS = ("input_width", "input_height")
MODEL_PARAMS = (
    "weights",
    "labels_file",
    "device",
    "precision",
    "backend",
    "num_threads",
    "input_width",
    "input_height",
    "int8_calibration_dir",
)
INPUT_PARAMS = ("image_topic", "input_transport", "input_qos.reliability", "input_qos.depth")
#: string parameters with a fixed set of values (their descriptor's ``additional_constraints``)
CHOICE_PARAMS = (
    "precision",
    "output_resolution",
    "upsample",
    "input_transport",
    "input_qos.reliability",
    "output_qos.reliability",
    "backend",
)
MAX_INPUT_SIZE = 8192
SIZE_HELP = "0 takes the checkpoint's input_size"


def _size_descriptor(description: str) -> ParameterDescriptor:
    # rclpy accepts from_value + k*step (and to_value): 0, 8, 16, ... 8192
    return descriptor(description, int_range=(0, MAX_INPUT_SIZE), int_step=OUTPUT_STRIDE)


#: name -> (default, descriptor)
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "weights": (
        "",
        descriptor(
            "ESNet checkpoint: a bundled model by name (camvid: real streets, the default; synthetic: the "
            "synthetic demo's model, not for real cameras), or a path (.safetensors, .onnx, or the authors' .pt "
            "state_dict). Empty: camvid. Changing it reloads in the background; a missing or corrupt file is "
            "refused and the old model keeps serving."
        ),
    ),
    "labels_file": (
        "",
        descriptor(
            "Class/palette YAML for a custom dataset (format: esnet_ros/core/labels.py). Empty: the "
            "checkpoint's own classes."
        ),
    ),
    "device": (
        ENGINE_DEFAULTS["device"],
        descriptor(
            "Inference device: auto (CUDA when available, else the CPU), cpu, cuda or cuda:N. "
            "Changing it reloads in the background.",
            choices=("auto", "cpu", "cuda", "cuda:N"),
        ),
    ),
    "precision": (
        ENGINE_DEFAULTS["precision"],
        descriptor(
            "auto (fp16 on CUDA; on the CPU the weights' validated int8 companion NAME_int8.onnx where it costs "
            "at most 0.5 mIoU points and the CPU has int8 dot products, else bf16 with OpenVINO where the CPU has "
            "AMX or AVX512-BF16, else fp32; logged and on /diagnostics with the reason), fp32, fp16 (CUDA only), "
            "bf16 (OpenVINO) or int8 (the int8 companion, an int8 ONNX model from `esnet export --int8`, or "
            "OpenVINO's NNCF quantization).",
            choices=PRECISIONS,
        ),
    ),
    "backend": (
        ENGINE_DEFAULTS["backend"],
        descriptor(
            "Inference backend: auto (on the CPU OpenVINO where installed and the CPU has bf16, else "
            "onnxruntime; torch on CUDA), torch, onnxruntime, openvino or tensorrt; changing it reloads "
            "in the background and a failed switch keeps the old engine serving.",
            choices=BACKENDS,
        ),
    ),
    "num_threads": (
        ENGINE_DEFAULTS["num_threads"],
        descriptor(
            "CPU threads for inference (0: all cores). Thread pools never busy-spin, so a shared robot CPU "
            "keeps time for the camera driver and the planner. Changing it reloads in the background.",
            int_range=(0, 1024),
        ),
    ),
    "input_width": (
        0,
        _size_descriptor(
            f"Network input width in pixels (the camera image is resized to it); a multiple of 8; {SIZE_HELP} "
            "(set both sizes or neither)."
        ),
    ),
    "input_height": (0, _size_descriptor(f"Network input height in pixels; a multiple of 8; {SIZE_HELP}.")),
    "int8_calibration_dir": (
        ENGINE_DEFAULTS["int8_calibration_dir"],
        descriptor(
            "precision:=int8 with backend:=openvino: camera-like images (PNG/JPEG, searched recursively) that "
            "NNCF calibrates on, once (the quantized model is cached). Empty: int8 needs an int8 .onnx from "
            "`esnet export --int8` as weights."
        ),
    ),
    "output_resolution": (
        "input",
        descriptor(
            "Size of labels/color/overlay/confidence: input (the camera's, pixels line up with it) or "
            "network (input_width x input_height, cheaper).",
            choices=("input", "network"),
        ),
    ),
    "upsample": (
        ENGINE_DEFAULTS["upsample"],
        descriptor(
            "How labels are brought back to the camera's size (output_resolution=input): nearest (labels "
            "upsampled, cheaper) or bilinear (logits upsampled, then the argmax; smoother edges).",
            choices=UPSAMPLE_MODES,
        ),
    ),
    "image_topic": (
        "camera/image_raw",
        descriptor(
            "Camera topic (relative names resolve in the node's namespace; remapping works too). With "
            "input_transport=compressed the node subscribes to <image_topic>/compressed."
        ),
    ),
    "input_transport": (
        "raw",
        descriptor(
            "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage, JPEG or PNG).",
            choices=("raw", "compressed"),
        ),
    ),
    "input_qos.reliability": (
        "auto",
        descriptor(
            "Camera subscription reliability. auto: reliable if any camera publisher is reliable, best "
            "effort if all are (re-checked as publishers come and go).",
            choices=RELIABILITIES,
        ),
    ),
    "input_qos.depth": (
        1,
        descriptor(
            "Camera subscription queue depth (the node keeps only the newest frame anyway).", int_range=(1, 100)
        ),
    ),
    "output_qos.reliability": (
        "reliable",
        descriptor(
            "Reliability of labels/color/overlay/confidence/stats. Best effort loses large frames on "
            "default Fast DDS (see docs/node.md).",
            choices=("reliable", "best_effort"),
            read_only=True,
        ),
    ),
    "output_qos.depth": (1, descriptor("Queue depth of the outputs.", int_range=(1, 100), read_only=True)),
    "overlay_alpha": (
        0.5,
        descriptor("Overlay blend: 0 shows the camera image only, 1 the class colors only.", float_range=(0.0, 1.0)),
    ),
    "max_rate_hz": (
        0.0,
        descriptor(
            "Upper bound on processed frames per second (newer frames replace waiting ones); 0: unlimited.",
            float_range=(0.0, 1000.0),
        ),
    ),
    "max_input_pixels": (
        MAX_INPUT_PIXELS,
        descriptor(
            "Camera frames with more pixels than this are rejected (cause too_large) before any decoding.",
            int_range=(1, 1 << 31),
        ),
    ),
    "min_confidence": (
        0.0,
        descriptor(
            "Pixels whose confidence (max softmax) is below this get unknown_label in labels and points, are drawn "
            "black in color and overlay, and are counted in stats under unknown_label; 0: off.",
            float_range=(0.0, 1.0),
        ),
    ),
    "unknown_label": (
        255,
        descriptor(
            "The label of pixels below min_confidence and of classes a class_remap drops; not a class id.",
            int_range=(0, 255),
        ),
    ),
    "class_remap": (
        "",
        descriptor(
            "YAML file mapping the model's classes onto a planner's label space (names, ids, colors; format in "
            "esnet_ros/core/remap.py); labels, color, points, class_map and label_info are published in it. "
            "Empty: the model's classes."
        ),
    ),
    "depth_topic": (
        "",
        descriptor(
            "Depth image registered to the camera (16UC1 millimetres or 32FC1 metres); set: publish esnet/points "
            "(organized PointCloud2 at the labels' size). Empty: no depth, no points."
        ),
    ),
    "camera_info_topic": (
        "",
        descriptor(
            "The camera's CameraInfo. Empty: camera_info beside image_topic (image_transport's naming, e.g. "
            "camera/camera_info). Needed by esnet/points and esnet/camera_info."
        ),
    ),
    "sync_slop_s": (
        0.0,
        descriptor(
            "Matching image, depth and camera_info: 0 = exact stamps (message_filters' TimeSynchronizer), > 0 = "
            "approximate within this many seconds (ApproximateTimeSynchronizer).",
            float_range=(0.0, 1.0),
        ),
    ),
    "autostart": (
        True,
        descriptor(
            "Configure and activate at start-up; false leaves the node unconfigured for a lifecycle manager.",
            read_only=True,
        ),
    ),
}


def check_size(name: str, value: Any) -> str:
    """Why ``name=value`` is no valid network size ("" when it is): a multiple of 8 in 0..8192."""
    if not isinstance(value, int) or isinstance(value, bool):
        return f"{name}={value!r} must be an integer (a multiple of {OUTPUT_STRIDE}; {SIZE_HELP})"
    if not 0 <= value <= MAX_INPUT_SIZE:
        return f"{name}={value} must be within 0..{MAX_INPUT_SIZE} ({SIZE_HELP})"
    if value % OUTPUT_STRIDE:
        lo, hi = nearest_valid_sizes(value)
        return f"{name}={value} must be divisible by {OUTPUT_STRIDE} (ESNet downsamples 3 times); try {lo} or {hi}"
    return ""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a Segmenter is built from (the model parameters)."""

    weights: str
    labels_file: str
    device: str
    precision: str
    backend: str
    num_threads: int
    input_width: int
    input_height: int
    int8_calibration_dir: str = ""

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> ModelConfig:
        return cls(**{name: values[name] for name in MODEL_PARAMS})

    def weights_path(self) -> pathlib.Path:
        return resolve_weights(self.weights)

    def backend_options(self) -> dict[str, Any]:
        """The Segmenter's ``backend_options`` (int8 calibration images for OpenVINO)."""
        return calibration_options(self.backend, self.int8_calibration_dir)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The network size the parameters ask for; None: the checkpoint's (both sizes 0)."""
        return None if self.input_width == self.input_height == 0 else (self.input_width, self.input_height)


def check_model_config(cfg: ModelConfig) -> tuple[Any, LabelSet | None]:
    """Validate ``cfg`` cheaply and load its weights on the CPU: ``((model, meta) or onnx path, labels)``.

    Raises ``ValueError``/``FileNotFoundError`` naming the parameter and the fix.
    """
    for name, value in (("input_width", cfg.input_width), ("input_height", cfg.input_height)):
        reason = check_size(name, value)
        if reason:
            raise ValueError(reason)
    if (cfg.input_width == 0) != (cfg.input_height == 0):
        raise ValueError(
            f"input_width={cfg.input_width} and input_height={cfg.input_height}: set both (multiples of "
            f"{OUTPUT_STRIDE}) or neither (0 and 0: the checkpoint's input_size)"
        )
    if cfg.backend not in BACKENDS:
        raise ValueError(f"backend={cfg.backend!r} must be one of: {', '.join(BACKENDS)}")
    if cfg.device != "auto" or cfg.precision != "auto":  # auto always resolves (the Segmenter logs its choice)
        resolve_precision(cfg.precision, resolve_device(cfg.device))
    cfg.backend_options()  # int8 calibration images: an existing folder, for OpenVINO
    labels = load_labels_yaml(cfg.labels_file) if cfg.labels_file else None
    path = cfg.weights_path()
    if not cfg.weights and not path.is_file():
        raise FileNotFoundError(
            f"weights is empty but the bundled model {path} is missing (a partial install?); reinstall esnet_ros "
            f"or set weights:=/path/to/model.safetensors"
        )
    if path.suffix == ".onnx":  # an exported model: check it is readable and carries our metadata
        _check_onnx(path)
        return str(path), labels
    model, meta = load_checkpoint(path, "cpu", labels=labels)
    return (model, meta), labels


def _check_onnx(path: pathlib.Path) -> None:
    try:
        read_onnx_metadata(path)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # protobuf's DecodeError and friends: re-raised with the fix
        raise ValueError(
            f"weights {path} is not a readable ONNX file ({exc}); re-export it with `esnet export`"
        ) from exc


def check_choices(values: dict[str, Any]) -> str:
    """Why string parameters are outside their allowed values ("" when all are fine; rclpy checks ranges)."""
    for name in CHOICE_PARAMS:
        allowed = choices_of(PARAMETERS[name][1])
        if str(values[name]) not in allowed:
            return f"{name}={values[name]!r} must be one of: {', '.join(allowed)}"
    device = str(values["device"])
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        return f"device={device!r} must be one of: auto, cpu, cuda, cuda:N"
    if not str(values["image_topic"]).strip():
        return "image_topic must not be empty; e.g. camera/image_raw"
    return ""


def ros_syntax(error: BaseException | str) -> str:
    """An engine error in the node's words: ``device=cpu`` (how the core and the CLIs name a setting)
    becomes ``device:=cpu`` for every name that is one of this node's parameters; a quoted value
    (``device='cuda'``, the value as given) stays as it is."""
    names = "|".join(sorted(PARAMETERS, key=len, reverse=True))
    return re.sub(rf"(?<![\w.:-])({names})=(?![='\"])", r"\1:=", str(error))
