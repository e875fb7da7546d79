#!/usr/bin/env bash
# One-command setup: .venv (Python 3.11) with the pinned requirements, the CMake include-path fix for
# the ROS 2 wheels, and a colcon build of the workspace. Idempotent: each stage is skipped when its
# inputs have not changed (a no-op run takes a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=$root/.venv
py=${PYTHON:-python3.11}

say() { printf '[setup] %s\n' "$*"; }

if ! command -v "$py" >/dev/null; then
  echo "setup: $py not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  "$py" -m venv "$venv"
fi

# Reinstall only when requirements.txt changed since the last successful install.
stamp=$venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing requirements.txt into .venv (first run: a few minutes)"
  "$venv/bin/pip" install --disable-pip-version-check -q -r requirements.txt
  # The wheels' exported CMake files name the wheel build host's Python and numpy include folders;
  # point them at this interpreter's, or CMake rejects the imported targets.
  pyinc=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  npinc=$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')
  grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" | xargs -0 -r sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g"
  echo "$want" > "$stamp"
else
  say "requirements up to date"
fi

say "colcon build"
export VIRTUAL_ENV=$venv PATH=$venv/bin:$PATH AMENT_PREFIX_PATH=$venv
colcon --log-base log build --symlink-install --event-handlers console_direct- --base-paths src
say "done: source ./env.sh to use the workspace"
