"""esnet_ros: real-time semantic segmentation for ROS 2 with ESNet.

The core (model, checkpoints, labels, engine, training, export, benchmarks) imports without
rclpy; the ROS glue lives in :mod:`esnet_ros.node` and :mod:`esnet_ros.camera`.
"""

import pkgutil

# The generated esnet_ros.msg lives in the colcon install space, beside (not inside) a source
# checkout. Extending the package path lets a source tree first on sys.path still import it.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
