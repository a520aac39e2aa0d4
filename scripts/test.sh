#!/usr/bin/env bash
# Sets up whatever is missing, then runs the whole test suite (slow learning tests included).
#   scripts/test.sh [pytest args]      e.g. scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,sim,bench,pretrained,franky-sim
# The environment setup built must be consistent: a package someone installed by hand that
# breaks a pinned requirement shows here, before any test runs.
"${SERL_VENV:-.venv}/bin/python" -m pip check
export MUJOCO_GL=${MUJOCO_GL:-egl}
exec "${SERL_VENV:-.venv}/bin/python" -m pytest -q --durations=15 "$@"
