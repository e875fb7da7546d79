# Source this file for a ready shell:  source ./env.sh
# venv + ROS 2 wheels (AMENT_PREFIX_PATH) + the built workspace + per-workspace ROS_HOME + headless MuJoCo.
_conrft_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)
if [ ! -f "$_conrft_root/install/setup.bash" ]; then
  echo "env.sh: workspace not built; run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
export VIRTUAL_ENV=$_conrft_root/.venv
export PATH=$VIRTUAL_ENV/bin:$PATH
export AMENT_PREFIX_PATH=$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
# shellcheck disable=SC1091
source "$_conrft_root/install/setup.bash"
# The `conrft` command line (installed as a ROS executable of conrft_bringup).
export PATH=$_conrft_root/install/conrft_bringup/lib/conrft_bringup:$PATH
export ROS_HOME=${ROS_HOME:-$_conrft_root/.ros}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export MUJOCO_GL=${MUJOCO_GL:-egl}
unset _conrft_root
