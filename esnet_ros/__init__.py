"""esnet_ros: real-time semantic segmentation for ROS 2 with ESNet.

The package is layered; each layer imports only the ones before it::

    core  <-  inference  <-  data, training  <-  ros  <-  cli

``core`` (model, checkpoints, labels) needs torch and NumPy; ``ros`` alone imports rclpy and message
packages. The public Python API below is loaded lazily, so ``import esnet_ros`` stays light (no torch)::

    from esnet_ros import ESNet, LabelSet, Segmenter, load_checkpoint, save_checkpoint
"""

import importlib
import pkgutil

# The generated esnet_ros.msg lives in the colcon install space, beside (not inside) a source
# checkout. Extending the package path lets a source tree first on sys.path still import it.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"

_PUBLIC_API = {
    "ESNet": "esnet_ros.core.model",
    "LabelSet": "esnet_ros.core.labels",
    "ModelMeta": "esnet_ros.core.metadata",
    "load_checkpoint": "esnet_ros.core.checkpoint",
    "save_checkpoint": "esnet_ros.core.checkpoint",
    "Segmenter": "esnet_ros.inference.segmenter",
}
__all__ = sorted(_PUBLIC_API) + ["__version__"]


def __getattr__(name: str):
    module = _PUBLIC_API.get(name)
    if module is None:
        raise AttributeError(f"module 'esnet_ros' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC_API))
