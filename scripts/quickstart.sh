#!/usr/bin/env bash
# Sets up whatever is missing, then runs a short simulated training run — one learner and two
# actor processes talking over ZeroMQ on loopback — and prints the final evaluation and where
# its logs, learning curve and checkpoint are. Extra flags go to `serl train` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
exec "${SERL_VENV:-.venv}/bin/serl" train --run-dir runs/quickstart "$@"
