"""Every default of the engine and of the frame path, defined once.

The node's parameters (:mod:`esnet_ros.ros.parameters`), the launch file (through the node), the CLIs
(:mod:`esnet_ros.cli.engine_options`, ``esnet bag``), the bag job and :class:`~esnet_ros.inference.segmenter.Segmenter`
all read them from here; ``test/cli/test_engine_options.py`` checks that they agree.
"""

from __future__ import annotations

__all__ = ["ENGINE_DEFAULTS", "MAX_INPUT_PIXELS", "DEFAULT_UPSAMPLE", "UPSAMPLE_MODES"]

#: how labels get back to the image's size (see Segmenter)
UPSAMPLE_MODES = ("nearest", "bilinear")
DEFAULT_UPSAMPLE = "nearest"

#: the engine's settings, under the node's parameter names (the CLIs spell them --num-threads, ...)
ENGINE_DEFAULTS = {
    "device": "auto",  # CUDA when available, else the CPU
    "backend": "auto",  # the fastest backend that keeps accuracy on that device (logged)
    "precision": "auto",  # fp16 on CUDA; bf16 on CPUs with AMX/AVX512-BF16 (OpenVINO); else fp32
    "num_threads": 0,  # 0: the library's own choice
    "upsample": DEFAULT_UPSAMPLE,
    "int8_calibration_dir": "",
}

#: frames with more pixels are refused (an 8K frame is the largest a camera sends)
MAX_INPUT_PIXELS = 7680 * 4320
