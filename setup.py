"""pip packaging of the esnet_ros core and CLIs (training, export, benchmarks) for use without ROS.

ROS 2 users build the package with colcon (package.xml, CMakeLists.txt); this file serves
`pip install .`: the core imports without rclpy.
"""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def requirements(name: str = "requirements.txt") -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="esnet_ros",
    version="0.1.0",
    description="ESNet real-time semantic segmentation for ROS 2 (core, training, export, benchmarks)",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["esnet_ros", "esnet_ros.*"]),
    package_data={"esnet_ros": ["weights/*.safetensors", "weights/*_int8.onnx"], "esnet_ros.ros.dds": ["*.xml"]},
    install_requires=requirements(),
    extras_require={
        "test": ["pytest>=8,<8.4", "pytest-timeout>=2.2"],
        "openvino": requirements("requirements-openvino.txt"),
    },
    entry_points={
        "console_scripts": ["esnet = esnet_ros.cli:main", "esnet-segmentation-node = esnet_ros.ros.entry:run_node"]
    },
)
