# Source me:  . tools/env.sh
# Activates .venv and the colcon-built install of esnet_ros (made by `make setup`), so that
# `import rclpy`, `from esnet_ros.msg import ...`, `esnet` and `python -m esnet_ros.ros.node` work.
# The source tree comes first on PYTHONPATH: edits to esnet_ros/*.py take effect without a
# rebuild, and esnet_ros/__init__.py extends the package path to the generated esnet_ros.msg.
_esnet_here="${BASH_SOURCE[0]:-$0}"
ESNET_REPO="$(cd "$(dirname "$_esnet_here")/.." && pwd)"
export ESNET_REPO
if [ ! -x "$ESNET_REPO/.venv/bin/python" ]; then
  echo "esnet_ros: .venv is missing; run 'make setup' in $ESNET_REPO first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck source=/dev/null
. "$ESNET_REPO/.venv/bin/activate"
_esnet_install="$ESNET_REPO/.colcon/install"
case $- in *u*) _esnet_nounset=1; set +u ;; *) _esnet_nounset= ;; esac  # colcon's scripts use unset vars
if [ -f "$_esnet_install/local_setup.sh" ]; then
  # colcon's sh hook expects COLCON_CURRENT_PREFIX to locate itself when sourced from another dir
  COLCON_CURRENT_PREFIX="$_esnet_install" . "$_esnet_install/local_setup.sh"
else
  echo "esnet_ros: $_esnet_install is missing; run 'make setup' to build the messages" >&2
fi
case ":${PYTHONPATH:-}:" in
  *":$ESNET_REPO:"*) ;;
  *) export PYTHONPATH="$ESNET_REPO${PYTHONPATH:+:$PYTHONPATH}" ;;
esac
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# The wheels install their ament index (share/ament_index) into the venv: `ros2 interface show` and
# launch's front ends look packages up there through AMENT_PREFIX_PATH.
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$VIRTUAL_ENV:"*) ;;
  *) export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$VIRTUAL_ENV" ;;
esac
[ -n "$_esnet_nounset" ] && set -u
unset _esnet_here _esnet_install _esnet_nounset
