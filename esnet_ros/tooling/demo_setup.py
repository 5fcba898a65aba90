"""What ``esnet demo`` runs, set up before any process starts: :class:`DemoOptions` (its options, checked),
:class:`DemoModel` (the checkpoint the node serves) and :func:`prepare` (the output folder, int8 calibration).

No rclpy and no torch at import: ``esnet demo --help`` reads the options from here.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import TYPE_CHECKING

from esnet_ros.tooling.harness import CAMERA_TOPIC, DEFAULT_CAMERA_RATE_HZ, network_input_size
from esnet_ros.tooling.replay import check_label_folder

if TYPE_CHECKING:  # torch comes with ModelMeta: loaded only once a demo runs
    from esnet_ros.core.labels import LabelSet
    from esnet_ros.core.metadata import ModelMeta

__all__ = ["DemoOptions", "DemoModel", "DemoRun", "prepare", "INT8_CALIBRATION_SCENES"]

INT8_CALIBRATION_SCENES = 16


@dataclasses.dataclass
class DemoOptions:
    """What ``esnet demo`` runs; the fields mirror its options (see :mod:`esnet_ros.cli.demo`)."""

    seconds: float = 30.0
    camera: str | None = None  # a real camera topic instead of the synthetic camera
    camera_transport: str = "raw"  # with camera: raw or compressed
    output: str = "demo_output"
    weights: str | None = None  # None: the synthetic model for the synthetic camera, else the CamVid model
    width: int | None = None  # network input; None: the checkpoint's input_size
    height: int | None = None
    rate_hz: float = DEFAULT_CAMERA_RATE_HZ
    camera_size: tuple[int, int] | None = None  # the camera's frames; None: 1280x720 synthetic, images as they are
    images: str | None = None  # a folder of images or a video replayed as the camera (real frames)
    labels: str | None = None  # with images: their ground truth (LABELS/<image stem>.png), for a live mIoU
    pool_size: int = 10
    seed: int = 0
    save_frames: int = 5
    video_seconds: float = 5.0  # side_by_side.mp4: this long a stretch of camera | classes | overlay (0: none)
    startup_timeout: float = 120.0
    all_outputs: bool = False  # also subscribe to color, overlay and confidence while measuring
    background_load: int = 0  # cores kept busy by CPU hogs while measuring (a shared robot CPU)
    node_params: tuple[str, ...] = ()  # more node parameters, "name:=value"
    int8: bool = False  # OpenVINO int8, NNCF-calibrated on synthetic train scenes written to output/calibration

    def check(self) -> None:
        """``ValueError`` naming the option and the fix for anything out of range."""
        if not self.seconds > 0:
            raise ValueError(f"--seconds {self.seconds} must be > 0, e.g. --seconds 30")
        if not 0 < self.rate_hz <= 1000:
            raise ValueError(f"--rate-hz {self.rate_hz} must be in (0, 1000], e.g. --rate-hz 30")
        if self.camera is not None and self.images is not None:
            raise ValueError("--camera and --images both given: segment a live camera topic or replay images, not both")
        if self.labels is not None and self.images is None:
            raise ValueError(f"--labels {self.labels} needs --images (the frames those labels belong to)")
        if self.camera is not None and not self.camera.startswith("/"):
            raise ValueError(f"--camera {self.camera!r} must be an absolute topic name, e.g. /my_camera/image_raw")
        if self.video_seconds < 0:
            raise ValueError(f"--video-seconds {self.video_seconds} must be >= 0 (0: no video)")
        if self.save_frames < 0:
            raise ValueError(f"--save-frames {self.save_frames} must be >= 0")
        if not 1 <= self.pool_size <= 1000:
            raise ValueError(f"--pool-size {self.pool_size} must be in 1..1000")
        for param in self.node_params:
            name, sep, value = param.partition(":=")
            if not sep or not name.strip() or not value.strip():
                raise ValueError(f"--param {param!r} must be NAME:=VALUE, e.g. --param precision:=int8")

    @property
    def synthetic(self) -> bool:
        """The synthetic camera: no real camera topic and no images to replay."""
        return self.camera is None and self.images is None

    @property
    def own_camera(self) -> bool:
        """The demo starts the camera (synthetic scenes or replayed images) rather than listening to one."""
        return self.camera is None

    @property
    def camera_topic(self) -> str:
        """The topic the node segments: the demo's own camera's, or the live camera's."""
        return CAMERA_TOPIC if self.own_camera else self.camera

    @property
    def ground_truth(self) -> bool:
        return self.synthetic or (self.images is not None and self.labels is not None)

    @property
    def frame_size(self) -> tuple[int, int]:
        """What the camera is asked for: the synthetic scenes' size, or (0, 0) for the images' own."""
        return self.camera_size or ((1280, 720) if self.synthetic else (0, 0))


@dataclasses.dataclass(frozen=True)
class DemoModel:
    """The checkpoint the node serves, with what the demo reads from it."""

    weights: pathlib.Path
    size: tuple[int, int]  # the network input, (width, height)
    meta: ModelMeta
    labels: LabelSet

    @classmethod
    def for_options(cls, options: DemoOptions) -> DemoModel:
        """The model ``options`` name; the synthetic camera draws what the synthetic model was trained on, real
        frames get the CamVid model. ``FileNotFoundError`` when a bundled model is missing."""
        from esnet_ros.core.checkpoint import resolve_weights

        weights = resolve_weights(options.weights or ("synthetic" if options.synthetic else None))
        if not options.weights and not weights.is_file():
            raise FileNotFoundError(f"the bundled model {weights} is missing; pass --weights PATH to a checkpoint")
        size, meta, labels = network_input_size(weights, options.width, options.height)
        return cls(weights=weights, size=size, meta=meta, labels=labels)


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """One demo: its options (node parameters complete), its model and its output folder."""

    options: DemoOptions
    model: DemoModel
    out: pathlib.Path


def prepare(options: DemoOptions) -> DemoRun:
    """Check ``options``, load the model's metadata, empty the output folder of an earlier run's files and,
    with ``int8``, write the calibration scenes and add the node parameters that use them."""
    options.check()
    model = DemoModel.for_options(options)
    if options.labels is not None:
        check_label_folder(options.images, options.labels, model.labels)
    out = pathlib.Path(options.output)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("overlay_*.png")) + [
        out / "side_by_side.png",
        out / "side_by_side.mp4",
        out / "summary.json",
    ]:
        old.unlink(missing_ok=True)
    if options.int8:
        options = dataclasses.replace(options, node_params=_int8_params(out, options) + options.node_params)
    return DemoRun(options=options, model=model, out=out)


def _int8_params(out: pathlib.Path, options: DemoOptions) -> tuple[str, ...]:
    """``--int8``: calibration images (synthetic *train* scenes: not the ones the camera shows) and the node
    parameters that quantize with them (once: later runs reuse the cached int8 model)."""
    from esnet_ros.data.synth.writer import write_pairs

    folder = out / "calibration"
    images = folder / "images" / "train"
    if len(list(images.glob("*.png"))) != INT8_CALIBRATION_SCENES:
        print(f"esnet demo: writing {INT8_CALIBRATION_SCENES} calibration scenes for int8 to {folder}", flush=True)
        write_pairs(folder, INT8_CALIBRATION_SCENES, seed=options.seed + 1, size=options.camera_size, split="train")
    return ("backend:=openvino", "precision:=int8", f"int8_calibration_dir:={images.resolve()}")
