#!/usr/bin/env bash
# Sets up whatever is missing, then runs a short simulated training run and prints the
# evaluation result and where its logs, learning curve and checkpoint are.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
exec "${SERL_VENV:-.venv}/bin/serl" train-local --env Pendulum-v1 --agent sac --steps 6000 \
  --eval-every 2000 --run-dir runs/quickstart "$@"
