#!/usr/bin/env bash
# Creates .venv (or $SERL_VENV) with torch and serl-suite installed, doing only what is missing.
#
#   scripts/setup.sh [EXTRAS]        e.g. scripts/setup.sh dev,sim,bench,franky-sim
#
# EXTRAS are serl-suite's pip extras, plus one component that is not an extra:
#   franky-sim   a simulated Franka FR3 that speaks the libfranka network protocol
#                (franky-sim==1.0.4), in its own venv .venv-franky-sim (or $SERL_FRANKY_SIM_VENV):
#                it needs mujoco 4 and pin, the suite pins mujoco 3.3.7. The franka backend's
#                tests run it as a server process (tests/robots/test_franka_sim.py).
#
# torch is installed first and on its own so that no other package pulls a build of its own
# choosing. `pip install torch==2.13.0` gives the CUDA build on a Linux GPU PC; on a CPU-only
# machine set SERL_TORCH_INDEX=https://download.pytorch.org/whl/cpu to get the small CPU build
# (machines with a local wheel mirror already serve the CPU build).
set -euo pipefail
cd "$(dirname "$0")/.."

extras=${1:-dev}
venv=${SERL_VENV:-.venv}
franky_sim_venv=${SERL_FRANKY_SIM_VENV:-.venv-franky-sim}
franky_sim_version=1.0.4

if [[ ",$extras," == *",franky-sim,"* ]]; then
  with_franky_sim=1
  extras=$(echo ",$extras," | sed -e 's/,franky-sim,/,/g' -e 's/^,//' -e 's/,$//')
else
  with_franky_sim=0
fi
torch_version=${SERL_TORCH_VERSION:-2.13.0}

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"

if ! "$py" -c "import torch" 2>/dev/null; then
  echo "setup: installing torch==$torch_version"
  if [ -n "${SERL_TORCH_INDEX:-}" ]; then
    "$py" -m pip install -q "torch==$torch_version" --index-url "$SERL_TORCH_INDEX"
  else
    "$py" -m pip install -q "torch==$torch_version" 2> >(grep -v "^WARNING: Location" >&2)
  fi
fi

# Offscreen MuJoCo rendering on a machine without a display needs EGL (or OSMesa), and
# robosuite's OpenCV needs libGL.
if [[ ",$extras," == *",sim,"* ]] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  if ! { ldconfig -p | grep -q libEGL.so.1 && ldconfig -p | grep -q libGL.so.1; }; then
    echo "setup: installing EGL and GL for offscreen rendering"
    apt-get update -qq && apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 >/dev/null
  fi
fi

# The network-fault tests make hosts as network namespaces (serl/bench/netlab.py): iproute2.
if [[ ",$extras," == *",dev,"* ]] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
  && ! command -v ip >/dev/null; then
  echo "setup: installing iproute2 for the network-fault tests"
  apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null
fi

stamp="$venv/.serl-setup-$(sha256sum < pyproject.toml | cut -c1-16)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  echo "setup: installing serl-suite[$extras]"
  "$py" -m pip install -q -e ".[$extras]" 2> >(grep -v "^WARNING: Location" >&2)
  touch "$stamp"
fi

if [ "$with_franky_sim" = 1 ]; then
  fs_stamp="$franky_sim_venv/.serl-franky-sim-$franky_sim_version"
  if [ ! -f "$fs_stamp" ]; then
    echo "setup: installing franky-sim==$franky_sim_version into $franky_sim_venv"
    [ -x "$franky_sim_venv/bin/python" ] || python3 -m venv "$franky_sim_venv"
    "$franky_sim_venv/bin/python" -m pip install -q "franky-sim==$franky_sim_version" \
      2> >(grep -v "^WARNING: Location" >&2)
    touch "$fs_stamp"
  fi
fi
